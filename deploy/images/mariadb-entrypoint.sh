#!/bin/bash
# The stand-in mariadb image's entrypoint: what the official one does on a first start, for the
# variables docker-compose.yml sets. An empty /var/lib/mysql is initialised once by a server that
# listens on no network (so healthcheck.sh, which connects over TCP, fails until it is done); then
# mariadbd runs as the mysql user, listening on every address.
set -euo pipefail
datadir=/var/lib/mysql
if [ "${1#-}" != "$1" ]; then
  set -- mariadbd "$@"
fi
if [ "$1" != mariadbd ]; then
  exec "$@"
fi
shift
mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld "$datadir"

sql_string() { printf "'%s'" "${1//\'/\'\'}"; }
# pipefail off here: tr ends on SIGPIPE once head has its 32 characters.
random_password() { (set +o pipefail; LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32); }

if [ ! -d "$datadir/mysql" ]; then
  echo "docker-entrypoint.sh: initialising $datadir"
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
    --auth-root-authentication-method=normal >/dev/null
  socket=/run/mysqld/init.sock
  mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$socket" &
  init_pid=$!
  for _ in $(seq 60); do
    mariadb-admin --socket="$socket" -uroot ping >/dev/null 2>&1 && break
    sleep 1
  done
  root_password=${MARIADB_ROOT_PASSWORD:-}
  if [ -n "${MARIADB_RANDOM_ROOT_PASSWORD:-}" ]; then
    root_password=$(random_password)
    echo "GENERATED ROOT PASSWORD: $root_password"
  fi
  health_password=$(random_password)
  {
    echo "DELETE FROM mysql.global_priv WHERE User = '';"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "$root_password");"
    echo "CREATE USER 'healthcheck'@'127.0.0.1' IDENTIFIED BY $(sql_string "$health_password");"
    echo "CREATE USER 'healthcheck'@'::1' IDENTIFIED BY $(sql_string "$health_password");"
    echo "CREATE USER 'healthcheck'@'localhost' IDENTIFIED BY $(sql_string "$health_password");"
    if [ -n "${MARIADB_DATABASE:-}" ]; then
      echo "CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\`;"
    fi
    if [ -n "${MARIADB_USER:-}" ]; then
      echo "CREATE USER $(sql_string "$MARIADB_USER")@'%' IDENTIFIED BY $(sql_string "${MARIADB_PASSWORD:-}");"
      if [ -n "${MARIADB_DATABASE:-}" ]; then
        echo "GRANT ALL ON \`${MARIADB_DATABASE}\`.* TO $(sql_string "$MARIADB_USER")@'%';"
      fi
    fi
    echo "FLUSH PRIVILEGES;"
  } | mariadb --socket="$socket" -uroot
  printf '[mariadb-client]\nport=3306\nuser=healthcheck\npassword=%s\n' "$health_password" \
    >"$datadir/.my-healthcheck.cnf"
  chown mysql:mysql "$datadir/.my-healthcheck.cnf"
  chmod 600 "$datadir/.my-healthcheck.cnf"
  kill "$init_pid"
  wait "$init_pid" || true
  echo "docker-entrypoint.sh: initialised"
fi
exec mariadbd --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 "$@"
