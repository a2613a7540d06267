#!/usr/bin/env bash
# Prepares .device/ for scripts/device_run.sh (run HERE, with network, in the repo root):
#   .device/wheels/     Keras 3.15.1 and the packages it needs that the GPU machine may lack,
#                       built for that machine's Python (3.12, x86_64 manylinux);
#   .device/mnist-10k/  the MNIST t10k IDX files, copied from ../shared/data/mnist-10k.
# .device/ is git-ignored; pass it to the device run as `carry: [".device"]`.
#   bash scripts/prepare_device_run.sh [PYTHON_VERSION (default 3.12)]
set -euo pipefail
cd "$(dirname "$0")/.."
PYV="${1:-3.12}"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
mkdir -p .device/wheels .device/mnist-10k
# keras and what it imports; on the GPU machine device_run.sh installs only those that are missing.
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .device/wheels \
  keras==3.15.1 namex optree absl-py rich markdown-it-py mdurl pygments h5py psutil packaging
if [ -d ../shared/data/mnist-10k ]; then
  cp ../shared/data/mnist-10k/t10k-* .device/mnist-10k/
else
  echo "no ../shared/data/mnist-10k: gpu_check.py will write synthetic IDX files instead"
fi
du -sh .device/wheels .device/mnist-10k
ls .device/wheels .device/mnist-10k
