#!/usr/bin/env bash
# The demo from a fresh clone: set up .venv, ingest the bundled demo catalog into an
# embedded LMDB store under .demo-data/, and search it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/ownrank demo --data-dir .demo-data "$@"
