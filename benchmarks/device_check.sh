#!/usr/bin/env bash
# One prepared check of dl on an accelerator machine, in a few minutes.
#
#   benchmarks/device_check.sh fetch   # on a machine with PyPI: wheels of the
#                                      # pure-Python packages an accelerator image
#                                      # often lacks (ml_collections, jraph) into .whl/
#   benchmarks/device_check.sh run     # on the accelerator machine, from the repo root
#
# `run` uses the python3 on PATH (PYTHON=... to choose another) with the jax,
# flax, optax and orbax it already has; wheels in .whl/ are installed first
# into a throw-away directory. It writes into $OUT (default /tmp/dl_device_check):
#   env.txt      devices, driver and package versions
#   train.log    the default experiment trained and evaluated on the accelerator
#   tests.log    the model and fast-path tests on the accelerator
#   options.log  the training options on the accelerator: gradient accumulation
#                with EMA (evaluated with --weights=ema), float16 with loss
#                scaling, remat, and the data x fsdp mesh where there are
#                several devices
#   resnet50.jsonl  the first row to take: ResNet-50, bfloat16, batch 256,
#                224x224, synthetic data on the device (images/s, MFU, the
#                step's temporary memory with and without remat), beside
#                PyTorch's (benchmarks/torch_resnet50.py: torch.compile,
#                channels-last, bfloat16 autocast) where torch is installed
#   bench.jsonl  the benchmark suite's rows (fraction of the published peak);
#                SUITE=row,row limits them (default: the headline rows)
#   bench.log    the benchmark's output
# Each phase has its own time limit (570 s in all, inside one 600 s device call);
# a failing phase is logged and the next runs.
# JAX_PLATFORMS defaults to cuda so that a missing GPU is an error, not a CPU run.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${OUT:-/tmp/dl_device_check}"
WHEELS=(ml_collections==1.1.0 jraph==0.0.6.dev0)

fetch() {
  mkdir -p .whl
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d .whl "${WHEELS[@]}"
  ls .whl
}

phase() {  # phase NAME SECONDS LOG COMMAND...
  local name=$1 seconds=$2 log=$3
  shift 3
  local t0=$SECONDS
  echo "== $name" | tee -a "$OUT/env.txt"
  timeout "$seconds" "$@" >>"$OUT/$log" 2>&1
  local rc=$?
  echo "   $name: exit $rc after $((SECONDS - t0)) s (log: $log)" | tee -a "$OUT/env.txt"
}

run() {
  mkdir -p "$OUT"
  export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda}" PYTHONUNBUFFERED=1
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade \
      --target /tmp/dl_site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/dl_site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  {
    date -u
    nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"
    "$PY" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0])
for name in ("jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "ml_collections", "jraph"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as e:  # noqa: BLE001
        print(name, "MISSING:", e)
import jax
print("devices", jax.devices())
print("device_kind", jax.devices()[0].device_kind)
EOF
  } >"$OUT/env.txt" 2>&1
  cat "$OUT/env.txt"
  local run_dir
  run_dir=$(mktemp -d)
  phase train 60 train.log bash -c "
    '$PY' -m experiments.train --config=experiments/configs/mlp_digits.py --workdir='$run_dir' &&
    '$PY' -m experiments.evaluate --workdir='$run_dir' --split=test"
  # Four test processes share the GPU: none may take most of its memory up front.
  XLA_PYTHON_CLIENT_PREALLOCATE=false phase tests 150 tests.log "$PY" -m pytest -q -x \
    -p no:cacheprovider -n 4 tests/models tests/test_fast_paths.py
  local digits="--config=experiments/configs/mlp_digits.py --config.num_train_steps=300"
  local devices
  devices=$("$PY" -c "import jax; print(jax.device_count())" 2>/dev/null || echo 1)
  phase options 90 options.log bash -c "set -e
    '$PY' -m experiments.train $digits --workdir='$run_dir/accum_ema' \
      --config.grad_accum_steps=4 --config.ema.decay=0.99
    '$PY' -m experiments.evaluate --workdir='$run_dir/accum_ema' --weights=ema --split=test
    '$PY' -m experiments.train $digits --workdir='$run_dir/float16' --config.dtype=float16
    '$PY' -m experiments.train --config=experiments/configs/resnet20_digits.py \
      --config.num_train_steps=20 --config.model.remat=full --workdir='$run_dir/remat'
    if [ '$devices' -gt 1 ]; then
      '$PY' -m experiments.train $digits --workdir='$run_dir/fsdp' --config.mesh.fsdp='$devices'
    fi"
  local resnet50="--config=experiments/configs/resnet50.py --config.dtype=bfloat16"
  resnet50+=" --config.batch_size=256 --config.eval_batch_size=256 --config.dataset.num_samples=384"
  phase resnet50 150 resnet50.log bash -c "
    '$PY' -m experiments.benchmark $resnet50 --output='$OUT/resnet50.jsonl'
    '$PY' -m experiments.benchmark $resnet50 --config.model.remat=dots_saveable \
      --output='$OUT/resnet50.jsonl'
    '$PY' -m benchmarks.torch_resnet50 --batch=256 --output='$OUT/resnet50.jsonl' ||
      echo 'PyTorch reference skipped (torch and torchvision needed)'"
  local headline=mlp_784_512_512_10_batch1024,resnet20_digits,lstm_len32_hidden128_batch64
  phase bench 120 bench.log "$PY" -m experiments.benchmark --suite="${SUITE:-$headline}" \
    --references=plain_jax,single_steps --output="$OUT/bench.jsonl"
  tail -n 3 "$OUT/train.log" "$OUT/tests.log"
  tail -n 3 "$OUT/options.log"
  for rows in "$OUT/resnet50.jsonl" "$OUT/bench.jsonl"; do
    [ -f "$rows" ] && cut -c1-300 "$rows"
  done
}

case "${1:-}" in
  fetch) fetch ;;
  run) run ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
