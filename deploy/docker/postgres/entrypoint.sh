#!/bin/bash
# Same contract as the official image's entrypoint, reduced to what compose uses:
# on an empty $PGDATA, initdb with POSTGRES_USER/POSTGRES_PASSWORD (scram), run the
# init scripts against a local-only server, then the server on all interfaces.
set -euo pipefail
: "${POSTGRES_PASSWORD:?}"
export POSTGRES_USER="${POSTGRES_USER:-postgres}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -k /run/postgresql" start >/dev/null
    export PGHOST=/run/postgresql
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sh) echo "init: $script"; bash "$script" ;;
            *.sql) echo "init: $script"; psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -f "$script" ;;
        esac
    done
    unset PGHOST
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -k /run/postgresql "$@"
