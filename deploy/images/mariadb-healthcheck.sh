#!/bin/bash
# The stand-in mariadb image's healthcheck.sh, for the two tests docker-compose.yml asks of the
# official one: --connect (a client connects over TCP, so not while the first start's set-up runs)
# and --innodb_initialized (InnoDB is up).
set -euo pipefail
client=(mariadb --defaults-extra-file=/var/lib/mysql/.my-healthcheck.cnf -h 127.0.0.1 --protocol=tcp
  --batch --skip-column-names)
for test in "$@"; do
  case "$test" in
    --connect) "${client[@]}" -e 'SELECT 1' >/dev/null ;;
    --innodb_initialized)
      [ "$("${client[@]}" -e "SELECT 1 FROM information_schema.ENGINES
        WHERE engine = 'InnoDB' AND support IN ('YES', 'DEFAULT', 'ENABLED')")" = 1 ] ;;
    *) echo "healthcheck.sh: $test is not a test of this stand-in" >&2; exit 2 ;;
  esac
done
