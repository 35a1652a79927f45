#!/bin/sh
# Makes the cluster on the first start (role and database from POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB), then
# runs PostgreSQL as the postgres user in the foreground, listening on every address with password authentication.
set -eu
: "${POSTGRES_USER:=ide}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "ide-postgres: set POSTGRES_PASSWORD (deploy/.env, see docs/deploy.md)" >&2
    exit 1
fi
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

mkdir -p "$PGDATA" /var/run/postgresql
chown postgres:postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    as_postgres initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        printf 'CREATE DATABASE "%s" OWNER "%s"\n' "$POSTGRES_DB" "$POSTGRES_USER" |
            as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "ide-postgres: made the cluster, role $POSTGRES_USER and database $POSTGRES_DB" >&2
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" -c listen_addresses='*'
