#!/usr/bin/env bash
# Installs kmixvae, then trains the default model (configs/film_het.json).
# Data, said in the first line of output:
#   - local MNIST files when there: DATA_DIR, else ../shared/data/mnist-10k. A folder with the
#     training files (train-images-idx3-ubyte[.gz] or an mnist.npz) trains on `train` and
#     validates on `test`; one with only the 10k test files trains on test[:80%] and validates
#     on test[80%:];
#   - otherwise TFDS MNIST (downloaded once; train -> training, test -> validation). Offline
#     without local files it stops at once with one line saying how to point it at files.
# Extra arguments go to `kmixvae fit`.
set -euo pipefail
cd "$(dirname "$0")/.."
DEFAULT_DIR=../shared/data/mnist-10k
if [ -n "${DATA_DIR:-}" ] || [ -d "$DEFAULT_DIR" ]; then
  dir="${DATA_DIR:-$DEFAULT_DIR}"
  if [ ! -d "$dir" ]; then
    echo "error: DATA_DIR='$dir' is not a folder; point DATA_DIR at a folder of MNIST IDX files or an mnist.npz" >&2
    exit 2
  fi
  if compgen -G "$dir/train-images-idx3-ubyte*" >/dev/null || [ -f "$dir/mnist.npz" ]; then
    train=train val=test
  else
    train='test[:80%]' val='test[80%:]'
  fi
  echo "main: local MNIST files in $dir: training on $train, validating on $val"
  data_args=(--data-dir "$dir" --set "data.train_split=$train" --set "data.val_split=$val")
else
  tfds_dir="${TFDS_DATA_DIR:-$HOME/tensorflow_datasets}"
  if [ ! -d "$tfds_dir/mnist" ] && ! python3 -c 'import socket; socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()' 2>/dev/null; then
    echo "error: no local MNIST files ($DEFAULT_DIR is absent) and no network to download TFDS MNIST: run DATA_DIR=/path/to/mnist bash scripts/main.sh with a folder of MNIST IDX files (t10k-images-idx3-ubyte.gz, ...) or an mnist.npz" >&2
    exit 2
  fi
  echo "main: no local MNIST files (DATA_DIR unset, $DEFAULT_DIR absent): TFDS MNIST, training on train, validating on test"
  data_args=(--set data.source=tfds --set data.train_split=train --set data.val_split=test)
fi
bash scripts/setup_env.sh
exec .venv/bin/kmixvae fit --config configs/film_het.json "${data_args[@]}" "$@"
