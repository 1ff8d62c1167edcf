#!/usr/bin/env bash
# The demo from a fresh clone: set up .venv, load the bundled demo catalog into an embedded
# LMDB store under .demo-data/, and start the HTTP service on 127.0.0.1:8000. It prints the
# URL, an admin key, a token for the demo user and curl lines to try; Ctrl+C stops it.
# Extra arguments go to `ownrank serve`, e.g. `bash scripts/demo.sh --port 8080 --workers 2`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/ownrank serve --demo --data-dir .demo-data "$@"
