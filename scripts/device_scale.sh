#!/usr/bin/env bash
# The full-scale GPU session (issue 25 item 4, issues 26/27) on a machine with JAX (CUDA) but no
# TensorFlow, no Keras and no network, in one command with one time limit:
#   epoch60k  apps/epoch_overhead.py on all 60,000 Fashion-MNIST training images, an epoch being one
#             pass (training.epoch_images=60000), alone on the machine: each epoch's wall time
#             against the sum of its steps, the first (compiling) step, the recompiles, peak
#             accelerator memory and RSS, and the GPU's utilisation sampled by nvidia-smi;
#   seeds     the grids apps/grids/pipelines_jax_gpu.json (MNIST, 8 seeds) and
#             apps/grids/fashion_full_gpu.json (Fashion-MNIST train[:50000] -> train[50000:],
#             5 seeds), every (variant, seed) its own `apps/study.py` process on the one GPU, then
#             both reports.
# Results in $OUT (default ./device_out): device_scale.log, epoch60k.json, epoch60k.md,
# smi_epoch60k.csv, smi_seeds.csv and studies.tgz (reports, figures, each run's config, history
# and metrics). Prepare .device/scale here first: bash scripts/prepare_device_scale.sh
#   bash scripts/device_scale.sh
# Environment: PARTS ("epoch60k seeds"), DEVICE_TOTAL_S (540: the whole run), EPOCH60K_S (150),
# DEVICE_SCALE_SET (extra KEY=VALUE settings for every run, space-separated; for a smoke test),
# DEVICE_SCALE_SEEDS (seeds to run instead of the grids' own), PYTHON (python3).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/device_out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device_scale.log") 2>&1
PARTS="${PARTS:-epoch60k seeds}"
TOTAL="${DEVICE_TOTAL_S:-540}"
CARRIED="${DEVICE_SCALE_DIR:-.device/scale}"
PY="${PYTHON:-python3}"
SITE=/tmp/kmixvae_scale_site
DATA=/tmp/kmixvae_scale_data
START=$(date +%s)
step() { echo "[device_scale $(date +%H:%M:%S) +$(($(date +%s) - START))s] $*"; }
left() { echo $((TOTAL - ($(date +%s) - START))); }
read -r -a EXTRA <<<"${DEVICE_SCALE_SET:-}"
has_smi() { command -v nvidia-smi >/dev/null; }
sample_gpu() {  # FILE: utilisation and memory every 200 ms until killed
  has_smi || return 0
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits \
    -lms 200 >"$1" 2>/dev/null &
  echo $!
}

step "python $("$PY" --version 2>&1) at $(command -v "$PY"); parts: $PARTS; limit ${TOTAL}s; $(nproc) CPUs"
has_smi && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# 1. the carried wheels (keras, namex, optree, faiss-cpu), the repo itself on PYTHONPATH
if ls "$CARRIED"/wheels/*.whl >/dev/null 2>&1; then
  timeout 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --disable-pip-version-check --target "$SITE" "$CARRIED"/wheels/*.whl || step "wheel install FAILED"
fi
export PYTHONPATH="$SITE:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export XLA_PYTHON_CLIENT_PREALLOCATE=false KMIXVAE_CACHE_DIR=/tmp/kmixvae_cache

# 2. the data: MNIST t10k as carried, Fashion-MNIST train images carried as .xz (to fit the tree
#    limit) written out as plain IDX
mkdir -p "$DATA/mnist-10k" "$DATA/fashion-mnist-train"
cp "$CARRIED"/mnist-10k/* "$DATA/mnist-10k/" || step "no MNIST files in $CARRIED/mnist-10k"
"$PY" - "$CARRIED/fashion-mnist-train" "$DATA/fashion-mnist-train" <<'PY' || step "Fashion-MNIST FAILED"
import lzma, pathlib, shutil, sys
src, dst = map(pathlib.Path, sys.argv[1:])
for f in src.iterdir():
    if f.suffix == ".xz":
        with lzma.open(f) as i, open(dst / f.stem, "wb") as o:
            shutil.copyfileobj(i, o)
    else:
        shutil.copy(f, dst / f.name)
print("fashion-mnist-train:", sorted(p.name for p in dst.iterdir()))
PY

# 3. imports
if ! timeout 120 "$PY" -c "
import jax, keras, faiss, kmixvae
print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, keras.backend.backend(),
      'faiss', faiss.__version__, 'kmixvae', kmixvae.__file__)"; then
  step "import check FAILED: stopping"
  exit 1
fi

# 4. one 60,000-image epoch after another, alone on the machine
if [[ " $PARTS " == *" epoch60k "* ]]; then
  limit=$(( ${EPOCH60K_S:-150} < $(left) - 30 ? ${EPOCH60K_S:-150} : $(left) - 30 ))
  step "epoch60k: apps/epoch_overhead.py, ${limit}s at most"
  sampler=$(sample_gpu "$OUT/smi_epoch60k.csv")
  sets=()
  for s in data.train_split=train "data.val_split=train[50000:]" training.epoch_images=60000; do
    [[ " ${EXTRA[*]} " == *" ${s%%=*}="* ]] || sets+=(--set "$s")  # DEVICE_SCALE_SET wins
  done
  for s in "${EXTRA[@]}"; do sets+=(--set "$s"); done
  timeout --kill-after=5 "$limit" "$PY" apps/epoch_overhead.py --data-dir "$DATA/fashion-mnist-train" \
    "${sets[@]}" --out /tmp/epoch60k
  step "epoch60k exit $?"
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
  cp /tmp/epoch60k/epoch_overhead.json "$OUT/epoch60k.json" 2>/dev/null
  cp /tmp/epoch60k/epoch_overhead.md "$OUT/epoch60k.md" 2>/dev/null
  [ -s "$OUT/smi_epoch60k.csv" ] && "$PY" - "$OUT/smi_epoch60k.csv" <<'PY'
import statistics, sys
rows = [line.split(", ") for line in open(sys.argv[1]) if line.count(",") == 2]
util = [float(r[1]) for r in rows if r[1].strip().isdigit()]
mem = [float(r[2]) for r in rows if r[2].strip().isdigit()]
busy = [u for u in util if u > 0]
print(f"nvidia-smi: {len(util)} samples, utilisation mean {statistics.mean(util):.1f}% "
      f"(while > 0: mean {statistics.mean(busy) if busy else 0:.1f}%, "
      f"median {statistics.median(busy) if busy else 0:.0f}%), memory used max {max(mem):.0f} MiB")
PY
fi

# 5. the seed studies, every run its own process on the one GPU
if [[ " $PARTS " == *" seeds "* ]]; then
  export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
  mkdir -p /tmp/grids /tmp/study_logs
  names=()
  for grid in apps/grids/pipelines_jax_gpu.json apps/grids/fashion_full_gpu.json; do
    "$PY" - "$grid" "$DATA" "${DEVICE_SCALE_SEEDS:-}" "${EXTRA[@]}" <<'PY'
import json, pathlib, sys
path, data, seeds, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
grid = json.load(open(path))
grid["data_dir"] = str(pathlib.Path(data) / pathlib.Path(grid["data_dir"]).name)
if seeds:
    grid["seeds"] = [int(s) for s in seeds.split()]
given = {s.split("=", 1)[0] for s in extra}  # DEVICE_SCALE_SET wins
for v in grid["variants"].values():
    v["set"] = [s for s in v["set"] if s.split("=", 1)[0] not in given] + extra
json.dump(grid, open("/tmp/grids/" + pathlib.Path(path).name, "w"), indent=2)
print(grid["name"], "variants", list(grid["variants"]), "seeds", grid["seeds"], "data", grid["data_dir"])
PY
    names+=("$(basename "$grid" .json)")
  done
  # The judges the evaluations use, trained once before the runs need them.
  "$PY" - "$DATA" >/tmp/study_logs/judges.log 2>&1 <<'PY' &
import sys
from kmixvae.config import from_dict
from kmixvae.data import load_datasets
from kmixvae.evaluation.generation import default_judge_cache_dir, load_or_train_judge
for folder, train, val in (("mnist-10k", "test[:80%]", "test[80%:]"),
                           ("fashion-mnist-train", "train[:50000]", "train[50000:]")):
    cfg = from_dict({"data": {"source": "idx", "dir": f"{sys.argv[1]}/{folder}",
                              "train_split": train, "val_split": val}})
    data = load_datasets(cfg)
    judge = load_or_train_judge(data.train_images, data.train_labels, seed=0, source=train,
                                cache_dir=default_judge_cache_dir())
    print(folder, "judge ready, holdout accuracy", judge.holdout_accuracy, flush=True)
PY
  budget=$(($(left) - 60))
  step "seeds: grids ${names[*]}, ${budget}s for the runs"
  sampler=$(sample_gpu "$OUT/smi_seeds.csv")
  for name in "${names[@]}"; do
    g=/tmp/grids/$name.json
    for v in $("$PY" -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['variants']))" "$g"); do
      for s in $("$PY" -c "import json,sys; print(' '.join(map(str, json.load(open(sys.argv[1]))['seeds'])))" "$g"); do
        timeout --kill-after=5 "$budget" "$PY" apps/study.py --grid "$g" --only "$v" --seeds "$s" \
          >"/tmp/study_logs/${name}_${v}_${s}.log" 2>&1 &
      done
    done
  done
  wait $(jobs -p)
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
  step "runs done"
  files=()
  for name in "${names[@]}"; do
    timeout 25 "$PY" apps/study.py --grid "/tmp/grids/$name.json" --report-only \
      >>/tmp/study_logs/reports.log 2>&1
    step "report $name exit $?"
    files+=("docs/study_${name}.md" "docs/study_${name}")
    for rd in study_runs/"$name"/*/; do
      for f in config.json history.csv metrics.json eval_metrics.json; do
        [ -f "$rd$f" ] && files+=("$rd$f")
      done
    done
  done
  tar czf "$OUT/studies.tgz" "${files[@]}" /tmp/study_logs 2>/dev/null
  step "studies.tgz: $(du -h "$OUT/studies.tgz" | cut -f1)"
fi
ls -la "$OUT"
step "done"
