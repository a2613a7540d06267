#!/usr/bin/env bash
# Prepares .device/scale/ for scripts/device_scale.sh (run HERE, with network, in the repo root):
#   wheels/               keras 3.15.1, namex, optree and faiss-cpu for the GPU machine's Python
#                         (3.12, x86_64 manylinux); everything else keras needs is there already;
#   mnist-10k/            the MNIST t10k IDX files from ../shared/data/mnist-10k;
#   fashion-mnist-train/  the Fashion-MNIST train images re-compressed with xz (22.6 MB against
#                         gzip's 26.4, so that tree + data + wheels stay under the 64 MiB a device
#                         call carries) and the labels as they are.
# .device/ is git-ignored; pass it as `carry: [".device/scale"]`.
#   bash scripts/prepare_device_scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
D=.device/scale
mkdir -p "$D/wheels" "$D/mnist-10k" "$D/fashion-mnist-train"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$D/wheels" \
  keras==3.15.1 namex optree faiss-cpu==1.15.1
cp ../shared/data/mnist-10k/t10k-* "$D/mnist-10k/"
F=../shared/data/fashion-mnist-train
[ -f "$D/fashion-mnist-train/train-images-idx3-ubyte.xz" ] \
  || zcat "$F/train-images-idx3-ubyte.gz" | xz -6 -T2 >"$D/fashion-mnist-train/train-images-idx3-ubyte.xz"
cp "$F/train-labels-idx1-ubyte.gz" "$D/fashion-mnist-train/"
du -sh "$D"/*
