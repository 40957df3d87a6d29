#!/usr/bin/env bash
# The test suite, on a fresh machine: set up .venv/, then run pytest (slow, full-size tests excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
