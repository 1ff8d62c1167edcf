#!/usr/bin/env bash
# ruff (lint + format check) and mypy --strict over the package.
# mypy needs the import name `ownrank`, which setuptools maps from several top-level
# folders; a tree of symlinks under build/ gives mypy the same view.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin}
"$PY/ruff" check .
"$PY/ruff" format --check .
tree=build/typecheck/ownrank
rm -rf build/typecheck && mkdir -p "$tree"
for d in engine storage service demo; do ln -s "../../../$d" "$tree/$d"; done
for f in sdk/*; do ln -s "../../../$f" "$tree/$(basename "$f")"; done
MYPYPATH=build/typecheck "$PY/mypy" -p ownrank
