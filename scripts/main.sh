#!/usr/bin/env bash
# Installs kmixvae, then trains the default model (configs/film_het.json) on the
# real MNIST test split shipped beside the repo (../shared/data/mnist-10k):
# train on test[:80%], validate on test[80%:]. Extra arguments go to `kmixvae fit`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
DATA_DIR="${DATA_DIR:-../shared/data/mnist-10k}"
exec .venv/bin/kmixvae fit --config configs/film_het.json --data-dir "$DATA_DIR" \
  --set 'data.train_split=test[:80%]' --set 'data.val_split=test[80%:]' "$@"
