#!/usr/bin/env bash
# GPU session on a JAX-only machine: installs the carried wheels (.device/wheels) as
# scripts/device_run.sh does, then runs `kmixvae fit` for each "VARIANT:SEED" of a study grid as a
# parallel process on the one GPU (TensorBoard and the report off, to keep the end of each run short)
# and returns each run's config, history and metrics.json (with its generation metrics) as
# $OUT/fits.tgz.   bash scripts/device_fits.sh GRID VARIANT:SEED ...
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/device_out}"
mkdir -p "$OUT"
GRID="$1"; shift
LIMIT="${DEVICE_FITS_S:-300}"
START=$(date +%s)
log() { echo "[device_fits $(date +%H:%M:%S) +$(($(date +%s) - START))s] $*" | tee -a "$OUT/fits.log"; }
PY="${PYTHON:-python3}"
SITE=/tmp/kmixvae_site
mkdir -p "$SITE"
missing=()
for whl in .device/wheels/keras-*.whl .device/wheels/namex-*.whl .device/wheels/optree-*.whl; do
  missing+=("$whl")
done
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
  --target "$SITE" "${missing[@]}" || log "wheel install FAILED"
export PYTHONPATH="$SITE:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 KMIXVAE_CACHE_DIR=/tmp/kmixvae_cache
log "imports: $("$PY" -c 'import jax, keras; print(jax.__version__, keras.__version__, jax.devices())' 2>&1 | tail -1)"
name=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['name'])" "$GRID")
for vs in "$@"; do
  v=${vs%%:*}; s=${vs##*:}
  mapfile -t sets < <("$PY" -c "
import json,sys
g=json.load(open(sys.argv[1])); v=g['variants'][sys.argv[2]]
print(v['config'])
for s in v['set'] + ['seed=' + sys.argv[3], 'data.train_split=\"' + g['train_split'] + '\"',
                     'data.val_split=\"' + g['eval_split'] + '\"', 'output.tensorboard=false',
                     'output.report=false', 'output.saved_model=\"/tmp/fits/' + sys.argv[2] + '__seed' + sys.argv[3] + '.keras\"']:
    print('--set'); print(s)
" "$GRID" "$v" "$s")
  rd="study_runs/$name/${v}__seed${s}"
  rm -rf "$rd"; mkdir -p "$(dirname "$rd")" /tmp/fits
  timeout --kill-after=5 "$LIMIT" "$PY" -m kmixvae.cli fit --config "${sets[@]:0:1}" "${sets[@]:1}" \
    --data-dir .device/mnist-10k --run-dir "$rd" >"/tmp/fits/${v}__seed${s}.log" 2>&1 &
done
sleep 45; nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader | tee -a "$OUT/fits.log"
wait
log "fits done"
tar czf "$OUT/fits.tgz" study_runs/"$name"/*/{config.json,history.csv,metrics.json} /tmp/fits/*.log 2>>"$OUT/fits.log"
ls -la "$OUT"
