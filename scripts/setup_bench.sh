#!/usr/bin/env bash
# Sets up .venv for the benchmarks (bench/run_all.py): ownrank with its test extras, plus
# the peers the quality benchmark compares against (implicit, LightFM) and matplotlib for
# the report's plots. LightFM's sdist does not build under PEP 517 isolation with a
# recent setuptools, so it is built without isolation against an older one, which is
# then upgraded back. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/python -m pip install --quiet "implicit>=0.7" "matplotlib>=3.8"
if ! .venv/bin/python -c "import lightfm" >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet "setuptools<70" wheel cython
  .venv/bin/python -m pip install --quiet --no-build-isolation lightfm ||
    echo "lightfm could not be installed: the quality benchmark falls back to a content centroid" >&2
  .venv/bin/python -m pip install --quiet "setuptools>=77"
fi
