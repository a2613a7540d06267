#!/usr/bin/env bash
# One GPU session on a JAX-only machine (no TensorFlow, no Keras, no network), in two parts:
#   1. scripts/device_run.sh (wheels, imports, scripts/gpu_check.sh) within DEVICE_CHECK_S seconds;
#   2. a study grid (default apps/grids/channel_generation_gpu.json) with every (variant, seed) as its
#      own `apps/study.py --only V --seeds S` process on the one GPU, then its report.
# Results come back as $OUT/device_run.log, $OUT/gpu_check.json, ... and $OUT/study.tgz (the
# report, its figures, and each run's config, history, metrics and evaluation).
#   bash scripts/device_study.sh [GRID]
# Prepare .device/ first (scripts/prepare_device_run.sh): wheels and the MNIST IDX files.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/device_out}"
mkdir -p "$OUT"
GRID="${1:-apps/grids/channel_generation_gpu.json}"
TOTAL="${DEVICE_TOTAL_S:-540}"
START=$(date +%s)
log() { echo "[device_study $(date +%H:%M:%S) +$(($(date +%s) - START))s] $*" | tee -a "$OUT/study.log"; }

DEVICE_RUN_LIMIT_S="${DEVICE_CHECK_S:-170}" bash scripts/device_run.sh
log "device_run.sh exit $?"

export PYTHONPATH="${KMIXVAE_SITE:-/tmp/kmixvae_site}:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
# Many processes share one GPU: no process may take most of its memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export MKL_NUM_THREADS=1 KMIXVAE_CACHE_DIR=/tmp/kmixvae_cache
PY="${PYTHON:-python3}"

device_grid=/tmp/device_grid.json
"$PY" - "$GRID" "$device_grid" <<'PY'
import json, sys
grid = json.load(open(sys.argv[1]))
grid["data_dir"] = ".device/mnist-10k"  # the IDX files carried with the tree
json.dump(grid, open(sys.argv[2], "w"), indent=2)
print("variants:", " ".join(grid["variants"]), "seeds:", grid["seeds"])
PY
name=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['name'])" "$device_grid")
variants=$("$PY" -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['variants']))" "$device_grid")
seeds=$("$PY" -c "import json,sys; print(' '.join(map(str, json.load(open(sys.argv[1]))['seeds'])))" "$device_grid")

# The judge every evaluation uses, trained once before the runs need it.
"$PY" - <<'PY' >>"$OUT/study.log" 2>&1 &
from kmixvae.config import from_dict
from kmixvae.data import load_datasets
from kmixvae.evaluation.generation import default_judge_cache_dir, load_or_train_judge
cfg = from_dict({"data": {"source": "idx", "dir": ".device/mnist-10k",
                          "train_split": "test[:80%]", "val_split": "test[80%:]"}})
data = load_datasets(cfg)
judge = load_or_train_judge(data.train_images, data.train_labels, seed=0, source="test[:80%]",
                            cache_dir=default_judge_cache_dir())
print("judge ready, holdout accuracy", judge.holdout_accuracy, flush=True)
PY

budget=$((TOTAL - ($(date +%s) - START) - 45))
log "study $name: variants [$variants] seeds [$seeds], ${budget}s for the runs"
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader >>"$OUT/study.log" 2>&1
for v in $variants; do
  for s in $seeds; do
    timeout --kill-after=5 "$budget" "$PY" apps/study.py --grid "$device_grid" --only "$v" --seeds "$s" \
      >"/tmp/study_${v}_${s}.log" 2>&1 &
  done
done
sleep 60
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader >>"$OUT/study.log" 2>&1
wait
log "runs done; writing the report"
timeout 40 "$PY" apps/study.py --grid "$device_grid" --report-only >>"$OUT/study.log" 2>&1
log "report exit $?"
files=("docs/study_${name}.md" "docs/study_${name}")
for rd in study_runs/"$name"/*/; do
  for f in config.json history.csv metrics.json eval_metrics.json; do
    [ -f "$rd$f" ] && files+=("$rd$f")
  done
done
cp /tmp/study_*.log "$OUT/" 2>/dev/null; mkdir -p /tmp/study_logs && mv "$OUT"/study_*_*.log /tmp/study_logs/ 2>/dev/null
files+=(/tmp/study_logs)
tar czf "$OUT/study.tgz" "${files[@]}" 2>>"$OUT/study.log"
log "study.tgz: $(du -h "$OUT/study.tgz" | cut -f1)"
ls -la "$OUT"
