#!/usr/bin/env bash
# The whole test suite from a fresh clone: set up .venv, lint and type-check, run pytest.
# Exits non-zero when anything fails or when no test ran (pytest exits 5 then).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
bash scripts/lint.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/pytest "$@"
