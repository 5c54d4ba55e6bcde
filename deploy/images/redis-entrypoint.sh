#!/bin/sh
# The stand-in redis image's entrypoint, as the official one behaves: options alone mean redis-server;
# redis-server runs as the redis user, owning /data; protected mode off (the official build's default:
# the container's network is what guards it).
set -e
if [ "${1#-}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
  shift
  if [ -n "${1:-}" ] && [ "${1#-}" = "$1" ]; then
    conf=$1; shift; set -- redis-server "$conf" --protected-mode no "$@"
  else
    set -- redis-server --protected-mode no "$@"
  fi
  if [ "$(id -u)" = 0 ]; then
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$@"
  fi
fi
exec "$@"
