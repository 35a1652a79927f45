#!/usr/bin/env bash
# Install the demo page's front-end packages (xterm.js, Monaco) from package-lock.json into node_modules/,
# skipped when the lockfile has not changed since the last install.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
log() { printf '[frontend] %s\n' "$*" >&2; }
if [ ! -f package-lock.json ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    log "npm is missing: install Node.js 18+ and npm to get the demo page's editor and terminal"
    exit 1
fi
stamp="node_modules/.ide-lock-$(sha256sum package-lock.json | cut -c1-16)"
if [ -f "$stamp" ]; then
    exit 0
fi
log "installing front-end packages"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
touch "$stamp"
