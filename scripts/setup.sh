#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs ownrank into it, editable. Idempotent: the
# install is skipped when pyproject.toml has not changed since the last one. With the
# test extra it also installs headless Chromium for the browser tests (apt, if missing).
# Usage: scripts/setup.sh [extras]   e.g. scripts/setup.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate
      break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "ownrank needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.ownrank-installed${extras:+-$extras}"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch first and pinned: an unpinned torch would pull several GB of CUDA packages.
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".${extras:+[$extras]}"
  echo "$want" > "$stamp"
fi

# The browser tests (tests/test_demo_browser.py, docs/demo.md) drive Debian's Chromium
# through chromedriver: installed with the test extra when missing (sudo when not root).
# Where that fails they skip, or fail under CI=true.
if [[ ",$extras," == *",test,"* ]] &&
   ! { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "installing chromium and chromium-driver for the browser tests (apt-get)" >&2
    { $sudo apt-get update -qq &&
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
        >/dev/null; } ||
      echo "warning: chromium was not installed; the browser tests cannot run" >&2
  else
    echo "warning: no apt-get: install chromium and chromedriver for the browser tests" >&2
  fi
fi
