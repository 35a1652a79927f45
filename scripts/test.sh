#!/usr/bin/env bash
# Set up (skipping what is done) and run every check: ruff, mypy and the pytest suite against a real Docker
# engine, real SQLite files and a real PostgreSQL. Extra arguments go to pytest, for instance the quick tier:
#   scripts/test.sh -m "not docker and not browser"    (no engine, no browser; markers in pyproject.toml)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/setup.sh --test
if [ -z "${IDE_TEST_POSTGRES_URL:-}" ] && [ "$(id -u)" = 0 ]; then
    export IDE_TEST_POSTGRES_URL=postgresql://ide_test:ide_test@127.0.0.1:5432/ide_test
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
