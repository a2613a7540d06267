#!/usr/bin/env bash
# Two JAX processes on this machine (CPU, one device each, coordinator on 127.0.0.1 at a free
# port) train configs/smoke.json; exits 0 only when the result equals a 1-process, 2-device run
# (XLA_FLAGS=--xla_force_host_platform_device_count=2) within float tolerance. The last line
# says so, with the largest difference (see apps/multiprocess_check.py).
#
#   bash scripts/multiprocess_check.sh [--work-dir DIR] [--timeout S] [--rtol R] [--atol A]
#
# Python: $PYTHON, else .venv/bin/python if present, else python3 (scripts/_python.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/_python.sh
exec "$PY" apps/multiprocess_check.py "$@"
