#!/usr/bin/env bash
# Set up (skipping what is done) and run the server on the defaults: SQLite under ~/.local/share/ide-backend,
# the local Docker engine. Extra arguments go to `ide-backend serve` (e.g. --host 0.0.0.0 --port 8000).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/setup.sh"
exec "$ROOT/.venv/bin/ide-backend" serve "$@"
