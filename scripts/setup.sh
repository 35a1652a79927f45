#!/usr/bin/env bash
# Set up everything ide-backend needs on this machine, skipping what is already done:
# the Docker engine (installed and started when root), the images, and a virtualenv at .venv with the package.
#   scripts/setup.sh          for running the server
#   scripts/setup.sh --test   also the test tools and a local PostgreSQL for the PostgreSQL tests
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
log() { printf '[setup] %s\n' "$*" >&2; }

WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1

scripts/docker-engine.sh
scripts/build-images.sh

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    "$PY" -m venv .venv
fi
stamp=".venv/.ide-installed-$(sha256sum pyproject.toml | cut -c1-16)-$WITH_TEST"
if [ ! -f "$stamp" ]; then
    log "installing Python dependencies"
    extras=""
    [ "$WITH_TEST" = 1 ] && extras="[test]"
    .venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
    rm -f .venv/.ide-installed-*
    touch "$stamp"
fi

scripts/frontend.sh

if [ "$WITH_TEST" = 1 ]; then
    # VS Code in the browser: minutes the first time, then cached. Its tests skip (saying why) when it is missing.
    scripts/build-images.sh --code-server || log "the code-server image could not be built; its tests will be skipped"
    # The backend's own image (root Dockerfile), run by tests/test_backend_image.py; seconds when cached.
    scripts/build-images.sh --backend
    scripts/postgres.sh
    # Debian's docker-compose, for tests/test_deploy.py (deploy/docker-compose.yml).
    if [ ! -x /usr/bin/docker-compose ] && [ "$(id -u)" = 0 ]; then
        log "installing docker-compose (for the deployment test)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
    fi
    if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
        log "installing chromium (for the page tests)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
    fi
fi
log "ready"
