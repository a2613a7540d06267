# Sourced, not run, by the scripts that start one of apps/*.py, from the repository root:
#   source scripts/_python.sh
# Sets PY to the Python to use: $PYTHON, else .venv/bin/python if present, else python3.
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  PY=python3
fi
