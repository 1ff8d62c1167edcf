#!/usr/bin/env bash
# Sets up .venv for the benchmarks (bench/run_all.py): ownrank with its test extras (which
# include implicit and matplotlib, for the peers and the report's plots), plus LightFM.
# LightFM's sdist does not build under PEP 517 isolation with a recent setuptools, so it
# is built without isolation against an older one, which is then upgraded back.
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
if ! .venv/bin/python -c "import lightfm" >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet "setuptools<70" wheel cython
  .venv/bin/python -m pip install --quiet --no-build-isolation lightfm ||
    echo "lightfm could not be installed: the quality benchmark falls back to a content centroid" >&2
  .venv/bin/python -m pip install --quiet "setuptools>=77"
fi
