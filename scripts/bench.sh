#!/usr/bin/env bash
# The one benchmark command: sets up .venv for the benchmarks, then runs every benchmark
# in sequence and writes bench/results/*.json, bench/results/REPORT.md and its plots.
# Usage: scripts/bench.sh [--quick] [--only a,b] [--skip a,b] [--repeats N] [--data-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_bench.sh
exec .venv/bin/python bench/run_all.py "$@"
