#!/usr/bin/env bash
# `make images`: the stand-in bases that are missing (bases.sh), then imgproc:cpu and imgproc:gpu from
# the unchanged Dockerfiles, with each step's time and each image's size.
#
#   deploy/images/build.sh            both images
#   deploy/images/build.sh cpu        one of them (IMAGES="cpu" in make)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
engine=${CONTAINER_ENGINE:-podman}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
images=("${@:-cpu gpu}")
read -r -a images <<<"${images[*]}"

started=$(date +%s)
# Stand-ins only where the real bases are absent (pulled, or loaded from an internal registry);
# BASES names some of them (all by default: the compose file's too).
read -r -a bases <<<"${BASES:-}"
"$here/bases.sh" "${bases[@]}"
for kind in "${images[@]}"; do
  begun=$(date +%s)
  # Docker's image format: podman's default (OCI) has no HEALTHCHECK, and drops Dockerfile.gpu's.
  $engine build --format docker --file "Dockerfile.$kind" --tag "imgproc:$kind" .
  echo "imgproc:$kind: built in $(( $(date +%s) - begun )) s, $($engine image inspect --format '{{.Size}}' \
    "imgproc:$kind" | awk '{printf "%d MB", $1 / 1e6}')"
done
echo "images: $(( $(date +%s) - started )) s in all"
