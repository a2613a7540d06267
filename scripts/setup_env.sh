#!/usr/bin/env bash
# Creates .venv (if missing) and installs kmixvae with its pinned dependencies.
# Sourced by scripts/test.sh and scripts/main.sh; safe to run again (pip skips what is there).
#   bash scripts/setup_env.sh           # CPU builds (tensorflow-cpu, jax)
#   bash scripts/setup_env.sh --cuda    # GPU builds of both backends (requirements-cuda.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
if [ "${1:-}" = "--cuda" ]; then
  # tensorflow (the GPU build) and tensorflow-cpu write the same files: never both in one env.
  if .venv/bin/python -m pip show --quiet tensorflow-cpu 2>/dev/null; then
    echo "error: .venv holds tensorflow-cpu (a CPU install); remove .venv, then run this again" >&2
    exit 2
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-cuda.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e '.[test]'
else
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
fi
