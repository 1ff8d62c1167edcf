#!/usr/bin/env bash
# Load benchmark of the HTTP service: installs wrk (Debian package) if missing, sets up
# .venv, then runs bench/service_bench.py with the given options (see its --help).
# Everything binds to 127.0.0.1; the server is stopped at the end.
# Usage: scripts/bench_service.sh [--quick] [--connections 4,16] [--scenarios recommend] ...
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (apt-get install wrk) ..." >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null
fi
bash scripts/setup.sh
exec .venv/bin/python bench/service_bench.py "$@"
