#!/usr/bin/env bash
# Installs everything, lints, then runs the whole suite on TensorFlow and on JAX.
# Fails if either backend fails, or if pytest collects no test (exit 5).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh || { echo "setup failed"; exit 1; }
export PATH="$PWD/.venv/bin:$PATH"
ruff check . || { echo "ruff check failed"; exit 1; }
ruff format --check . || { echo "ruff format --check failed (run: .venv/bin/ruff format .)"; exit 1; }
status=0
for backend in tensorflow jax; do
  echo "=== pytest on KERAS_BACKEND=$backend ==="
  KERAS_BACKEND=$backend python -m pytest "$@"
  rc=$?
  if [ $rc -eq 5 ]; then
    echo "pytest collected no tests on $backend: the test setup is broken"; status=1
  elif [ $rc -ne 0 ]; then
    echo "pytest failed on $backend (exit $rc)"; status=1
  fi
done
exit $status
