#!/usr/bin/env bash
# What each installed backend (TensorFlow, JAX) sees, `apps/benchmark.py --quick` on them,
# and the training speed of the default config from local IDX files with
# distribution.strategy=auto, in one JSON: OUT_DIR/gpu_check.json (see apps/gpu_check.py).
# Without an accelerator it says so and exits 0 (add --on-cpu to measure anyway).
#
#   bash scripts/gpu_check.sh [OUT_DIR] [--data-dir DIR] [--steps N] [--cli-fit] [--on-cpu] ...
#
# Python: $PYTHON, else .venv/bin/python if present, else python3 (scripts/_python.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/_python.sh
OUT_DIR="${1:-gpu_check_out}"
[ $# -gt 0 ] && shift
echo "gpu_check: $("$PY" --version 2>&1) at $(command -v "$PY"), output in $OUT_DIR"
exec "$PY" apps/gpu_check.py --out "$OUT_DIR" "$@"
