#!/usr/bin/env bash
# A local PostgreSQL for the tests: installed and started when root, with role and database ide_test.
# Prints nothing on success; the tests read IDE_TEST_POSTGRES_URL (scripts/test.sh sets it).
set -euo pipefail
log() { printf '[postgres] %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "not root: skipping the PostgreSQL set-up (set IDE_TEST_POSTGRES_URL to use your own server)"
    exit 0
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
    pg_createcluster "$version" main >/dev/null
fi
if ! pg_lsclusters -h | grep -q "^$version main .* online"; then
    log "starting PostgreSQL $version"
    pg_ctlcluster "$version" main start
fi
if ! su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='ide_test'\"" | grep -q 1; then
    su postgres -c "psql -qc \"CREATE ROLE ide_test LOGIN PASSWORD 'ide_test' CREATEDB\""
fi
if ! su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='ide_test'\"" | grep -q 1; then
    su postgres -c "createdb -O ide_test ide_test"
fi
