#!/usr/bin/env bash
# Creates .venv (if missing) and installs kmixvae with its pinned dependencies.
# Sourced by scripts/test.sh and scripts/main.sh; safe to run again (pip skips what is there).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
