#!/usr/bin/env bash
# Stand-ins for the base images that Dockerfile.cpu, Dockerfile.gpu and docker-compose.yml name, made
# from the Debian archive alone (mmdebstrap, then `podman import`), for hosts that reach no image
# registry: an air-gapped network with a Debian mirror, or this project's CI. Each is tagged with the
# name the files use, so the Dockerfiles and the compose file build and run unchanged. What each
# stand-in differs in from the real image: README, Docker, "Building without a registry".
#
#   deploy/images/bases.sh            makes the bases that are missing (FORCE=1: all of them again)
#   deploy/images/bases.sh NAME...    only those (e.g. python:3.11-slim-bookworm node:20-bookworm-slim,
#                                     all that imgproc:cpu needs)
#
# IMGPROC_APT_SOURCES  the apt sources to build from (default: this host's own, so a mirror it uses is
#                      what the images use too)
# IMGPROC_BUILD_CA     a CA bundle the images trust beside Debian's (default: this host's bundle), for a
#                      network whose HTTPS (the package registries, a proxy) is signed by a CA of its own
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
engine=${CONTAINER_ENGINE:-podman}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
sources=${IMGPROC_APT_SOURCES:-$( [ -s /etc/apt/sources.list.d/debian.sources ] \
  && echo /etc/apt/sources.list.d/debian.sources || echo /etc/apt/sources.list)}
ca=${IMGPROC_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}
wanted=" $* "
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One base: NAME PACKAGES [mmdebstrap options...] -- [podman import --change options...]
base() {
  local name=$1 packages=$2 started tar
  tar="$work/${1//[:\/]/_}.tar"
  shift 2
  local debopts=() changes=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do debopts+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  changes=("$@")
  if [ "$wanted" != "  " ] && [[ "$wanted" != *" $name "* ]]; then
    return
  fi
  if [ -z "${FORCE:-}" ] && $engine image exists "$name"; then
    echo "$name: present (FORCE=1 makes it again)"
    return
  fi
  started=$(date +%s)
  # minbase: Essential packages and apt; no manuals, docs or translations, as the slim images.
  mmdebstrap --quiet --variant=minbase \
    --include="ca-certificates,debian-archive-keyring,$packages" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook="upload $ca /usr/local/share/ca-certificates/build-host.crt" \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1' \
    "${debopts[@]}" bookworm "$tar" "$sources"
  $engine import --quiet "${changes[@]}" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' "$tar" "$name" >/dev/null
  rm -f "$tar"
  echo "$name: made in $(( $(date +%s) - started )) s, $($engine image inspect --format '{{.Size}}' "$name" \
    | awk '{printf "%d MB", $1 / 1e6}')"
}

# python:3.11-slim-bookworm: Debian's Python 3.11 as a virtualenv at /usr/local, so that python, pip and
# site-packages sit where the official image has them (/usr/local/bin/python) and pip may install there.
base python:3.11-slim-bookworm python3.11,python3-venv,passwd \
  --customize-hook='chroot "$1" python3.11 -m venv /usr/local' \
  -- --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' --change 'CMD ["python3"]'

# node:20-bookworm-slim: Debian's Node.js and npm (18 and 9 on bookworm), enough for `npm pack`.
base node:20-bookworm-slim nodejs,npm \
  -- --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' --change 'CMD ["node"]'

# redis:7-alpine: Debian's Redis 7.0 on Debian, with the official image's entrypoint behaviour.
base redis:7-alpine redis-server \
  --customize-hook="upload $here/redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" \
  --customize-hook='chmod 755 "$1/usr/local/bin/docker-entrypoint.sh"; mkdir -p "$1/data"' \
  -- --change 'WORKDIR /data' --change 'EXPOSE 6379' \
  --change 'ENTRYPOINT ["docker-entrypoint.sh"]' --change 'CMD ["redis-server"]'

# mariadb:11: Debian's MariaDB 10.11, with the official image's first-start set-up (MARIADB_DATABASE,
# MARIADB_USER, MARIADB_PASSWORD, MARIADB_RANDOM_ROOT_PASSWORD) and its healthcheck.sh. The package
# initialises /var/lib/mysql as it installs; emptied, as the official image ships it, so that the
# first start of a volume runs the set-up.
base mariadb:11 mariadb-server,mariadb-client \
  --customize-hook="upload $here/mariadb-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" \
  --customize-hook="upload $here/mariadb-healthcheck.sh /usr/local/bin/healthcheck.sh" \
  --customize-hook='chmod 755 "$1"/usr/local/bin/*.sh' \
  --customize-hook='rm -rf "$1"/var/lib/mysql/* "$1"/var/lib/mysql/.[!.]*' \
  -- --change 'EXPOSE 3306' --change 'ENTRYPOINT ["docker-entrypoint.sh"]' --change 'CMD ["mariadbd"]'

# prom/prometheus:v2.42.0: Debian's Prometheus 2.42 (the tag names that version), laid out as the
# official image: the nobody user, its data in /prometheus, the configuration in /etc/prometheus.
base prom/prometheus:v2.42.0 prometheus \
  --customize-hook='mkdir -p "$1/prometheus" && chown nobody:nogroup "$1/prometheus"' \
  -- --change 'USER nobody' --change 'WORKDIR /prometheus' --change 'EXPOSE 9090' \
  --change 'ENTRYPOINT ["/usr/bin/prometheus"]' \
  --change 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
