#!/usr/bin/env bash
# One prepared check of dl on an accelerator machine, in under ten minutes.
#
#   benchmarks/device_check.sh fetch        # on a machine with PyPI: wheels of the
#                                           # pure-Python packages an accelerator
#                                           # image often lacks into .whl/
#   benchmarks/device_check.sh run          # on the accelerator machine, from the
#                                           # repo root: every phase below, in order
#   benchmarks/device_check.sh run PHASE..  # only these phases (e.g. resnet50 torch)
#
# `run` uses the python3 on PATH (PYTHON=... to choose another) with the jax,
# flax, optax and orbax it already has; wheels in .whl/ (ml_collections, jraph,
# tensorboardX) are installed first into a throw-away directory. Phases, the
# row to take first leading, each with its own time limit (570 s in all, inside
# one 600 s device call); a failing phase is logged and the next runs:
#   resnet50  dl's ResNet-50, bfloat16, batch 256, 224x224, synthetic data on
#             the device: images/s, MFU, the step's temporary memory
#   torch     PyTorch's ResNet-50 beside it (benchmarks/torch_resnet50.py:
#             torch.compile, channels-last, bfloat16 autocast), same device
#   remat     dl's ResNet-50 row again with model.remat=dots_saveable
#   train     the default experiment trained and evaluated
#   options   gradient accumulation with EMA (evaluated with --weights=ema),
#             float16 with loss scaling, remat, and the data x fsdp mesh where
#             there are several devices
#   bench     the benchmark suite's headline rows (fraction of the published peak)
#   tests     the model and fast-path tests
# Into $OUT (default /tmp/dl_device_check): env.txt (devices, driver, package
# versions, each phase's exit status and time), resnet50.jsonl (dl's and
# PyTorch's rows, and the comparison of the two), bench.jsonl, and a log per
# phase. BATCH=... changes the ResNet-50 batch (e.g. BATCH=8 to try this script
# on a CPU with JAX_PLATFORMS=cpu). JAX_PLATFORMS defaults to cuda so that a
# missing GPU is an error, not a CPU run. .whl/ is git-ignored: a copy of the
# repository sent to the accelerator machine must take it along, and
# `OUT=<the folder that comes back> benchmarks/device_check.sh run` leaves every
# log and row there.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${OUT:-/tmp/dl_device_check}"
BATCH="${BATCH:-256}"
WHEELS=(ml_collections==1.1.0 jraph==0.0.6.dev0 tensorboardX==2.6.5)
ALL=(resnet50 torch remat train options bench tests)

fetch() {
  mkdir -p .whl
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d .whl "${WHEELS[@]}"
  ls .whl
}

phase() {  # phase NAME SECONDS COMMAND...
  local name=$1 seconds=$2
  shift 2
  local t0=$SECONDS
  echo "== $name" | tee -a "$OUT/env.txt"
  timeout "$seconds" "$@" >>"$OUT/$name.log" 2>&1
  local rc=$?
  echo "   $name: exit $rc after $((SECONDS - t0)) s (log: $name.log)" | tee -a "$OUT/env.txt"
}

environment() {
  date -u
  nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"
  "$PY" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "ml_collections", "jraph",
             "tensorboardX", "torch", "torchvision"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as e:  # noqa: BLE001
        print(name, "MISSING:", e)
import jax
print("devices", jax.devices())
print("device_kind", jax.devices()[0].device_kind)
EOF
}

# The ResNet-50 rows: one compile each (no cache timings) and 5 blocks of 5
# steps, so that a row fits its phase on a GPU whose compile takes a minute.
RESNET50=(--config=experiments/configs/resnet50.py --config.dtype=bfloat16
  "--config.batch_size=$BATCH" "--config.eval_batch_size=$BATCH"
  "--config.dataset.num_samples=$((BATCH + BATCH / 2))"
  --nowarm_compile --repeats=5 --steps_per_block=5 "--output=$OUT/resnet50.jsonl")

run_phase() {
  local digits=(--config=experiments/configs/mlp_digits.py --config.num_train_steps=300)
  case "$1" in
    resnet50) phase resnet50 105 "$PY" -m experiments.benchmark "${RESNET50[@]}" ;;
    torch) phase torch 115 "$PY" -m benchmarks.torch_resnet50 "--batch=$BATCH" --steps=25 \
      "--output=$OUT/resnet50.jsonl" ;;
    remat) phase remat 90 "$PY" -m experiments.benchmark "${RESNET50[@]}" \
      --config.model.remat=dots_saveable ;;
    train) phase train 40 bash -c "set -e
      '$PY' -m experiments.train --config=experiments/configs/mlp_digits.py --workdir='$RUNS/train'
      '$PY' -m experiments.evaluate --workdir='$RUNS/train' --split=test" ;;
    options) phase options 70 bash -c "set -e
      '$PY' -m experiments.train ${digits[*]} --workdir='$RUNS/accum_ema' \
        --config.grad_accum_steps=4 --config.ema.decay=0.99
      '$PY' -m experiments.evaluate --workdir='$RUNS/accum_ema' --weights=ema --split=test
      '$PY' -m experiments.train ${digits[*]} --workdir='$RUNS/float16' --config.dtype=float16
      '$PY' -m experiments.train --config=experiments/configs/resnet20_digits.py \
        --config.num_train_steps=20 --config.model.remat=full --workdir='$RUNS/remat'
      if [ '$DEVICES' -gt 1 ]; then
        '$PY' -m experiments.train ${digits[*]} --workdir='$RUNS/fsdp' --config.mesh.fsdp='$DEVICES'
      fi" ;;
    # Four test processes share the GPU: none may take most of its memory up front.
    tests) XLA_PYTHON_CLIENT_PREALLOCATE=false phase tests 80 "$PY" -m pytest -q -x \
      -p no:cacheprovider -n 4 tests/models tests/test_fast_paths.py ;;
    bench) phase bench 50 "$PY" -m experiments.benchmark --nowarm_compile \
      --suite="${SUITE:-mlp_784_512_512_10_batch1024,resnet20_digits,lstm_len32_hidden128_batch64}" \
      --references=plain_jax,single_steps --output="$OUT/bench.jsonl" ;;
    *) echo "unknown phase '$1'; the phases are: ${ALL[*]}" >&2; return 2 ;;
  esac
}

run() {
  local phases=("$@")
  [ ${#phases[@]} -eq 0 ] && phases=("${ALL[@]}")
  for p in "${phases[@]}"; do
    case " ${ALL[*]} " in *" $p "*) ;; *) echo "unknown phase '$p'; the phases are: ${ALL[*]}" >&2; exit 2 ;; esac
  done
  mkdir -p "$OUT"
  export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda}" PYTHONUNBUFFERED=1
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade \
      --target /tmp/dl_site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/dl_site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  environment >"$OUT/env.txt" 2>&1
  cat "$OUT/env.txt"
  RUNS=$(mktemp -d)
  DEVICES=$("$PY" -c "import jax; print(jax.device_count())" 2>/dev/null || echo 1)
  for p in "${phases[@]}"; do
    run_phase "$p"
  done
  [ -f "$OUT/resnet50.jsonl" ] && "$PY" -m benchmarks.compare_resnet50 "$OUT/resnet50.jsonl"
  for p in "${phases[@]}"; do
    [ -f "$OUT/$p.log" ] && { echo "-- $p.log"; tail -n 3 "$OUT/$p.log"; }
  done
  [ -f "$OUT/bench.jsonl" ] && cut -c1-300 "$OUT/bench.jsonl"
  return 0
}

case "${1:-}" in
  fetch) fetch ;;
  run) shift; run "$@" ;;
  *) sed -n '2,35p' "$0"; exit 2 ;;
esac
