#!/usr/bin/env bash
# The GPU run in one go, for a machine with JAX (CUDA) but no TensorFlow, no Keras and no
# network: installs the wheels of .device/wheels that are missing (offline, no deps, into
# /tmp/kmixvae_site), installs kmixvae itself without deps, checks the imports, then runs
# scripts/gpu_check.sh on KERAS_BACKEND=jax with its results in $OUT (default ./device_out).
# Every step is logged with its time; the whole run stops after DEVICE_RUN_LIMIT_S seconds
# (default 420). Prepare .device/ first with scripts/prepare_device_run.sh.
#   bash scripts/device_run.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/device_out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device_run.log") 2>&1
LIMIT="${DEVICE_RUN_LIMIT_S:-420}"
START=$(date +%s)
PY="${PYTHON:-python3}"
SITE="${KMIXVAE_SITE:-/tmp/kmixvae_site}"
WHEELS="${DEVICE_WHEELS:-.device/wheels}"
step() { echo "[device_run $(date +%H:%M:%S) +$(($(date +%s) - START))s] $*"; }
left() { echo $((LIMIT - ($(date +%s) - START))); }

step "repo $(pwd); python $("$PY" --version 2>&1) at $(command -v "$PY"); limit ${LIMIT}s; out $OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHON="$PY"

# 1. wheels that are missing (a package already there is kept: JAX was built against its own)
declare -A MODULE=([keras]=keras [namex]=namex [optree]=optree [absl_py]=absl [rich]=rich
  [markdown_it_py]=markdown_it [mdurl]=mdurl [pygments]=pygments [h5py]=h5py [psutil]=psutil
  [packaging]=packaging)
missing=()
for whl in "$WHEELS"/*.whl; do
  [ -e "$whl" ] || { step "no wheels in $WHEELS (run scripts/prepare_device_run.sh)"; break; }
  dist=$(basename "$whl" | cut -d- -f1)
  mod="${MODULE[$dist]:-$dist}"
  if "$PY" -c "import $mod" 2>/dev/null; then
    step "$dist: already installed ($("$PY" -c "import importlib.metadata as m; print(m.version('${dist//_/-}'))" 2>/dev/null))"
  else
    missing+=("$whl")
  fi
done
mkdir -p "$SITE"
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${#missing[@]} wheels into $SITE: ${missing[*]##*/}"
  timeout 180 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --disable-pip-version-check --target "$SITE" "${missing[@]}" || step "wheel install FAILED"
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"

# 2. kmixvae itself, without its dependencies (the repo root stays on PYTHONPATH as a fallback)
step "installing kmixvae (no deps, no index)"
timeout 180 "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
  --no-cache-dir --disable-pip-version-check --target "$SITE" . \
  || step "pip could not build kmixvae here; using the source tree on PYTHONPATH"

# 3. imports
step "import check"
if ! timeout 300 "$PY" - <<'PY'
import importlib.util
import jax
print("jax", jax.__version__, "devices", jax.devices(), flush=True)
import keras
print("keras", keras.__version__, "backend", keras.backend.backend(), flush=True)
import kmixvae, kmixvae.cli, kmixvae.data.array_dataset
print("kmixvae", kmixvae.__file__)
print("tensorflow importable:", importlib.util.find_spec("tensorflow") is not None)
PY
then
  step "import check FAILED: stopping"
  exit 1
fi

# 4. the check itself, in what is left of the limit
budget=$(($(left) - 5))
step "scripts/gpu_check.sh with ${budget}s left"
timeout --kill-after=5 "$budget" bash scripts/gpu_check.sh "$OUT" --work-dir /tmp/kmixvae_gpu_work \
  --cli-fit --deadline $((budget - 10)) --step-timeout 240 "$@"
rc=$?
step "gpu_check.sh exit $rc"
ls -la "$OUT"
exit $rc
