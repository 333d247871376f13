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
#   bench.jsonl  the benchmark suite's rows (fraction of the published peak);
#                SUITE=row,row limits them
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
  phase train 90 train.log bash -c "
    '$PY' -m experiments.train --config=experiments/configs/mlp_digits.py --workdir='$run_dir' &&
    '$PY' -m experiments.evaluate --workdir='$run_dir' --split=test"
  # Four test processes share the GPU: none may take most of its memory up front.
  XLA_PYTHON_CLIENT_PREALLOCATE=false phase tests 180 tests.log "$PY" -m pytest -q -x \
    -p no:cacheprovider -n 4 tests/models tests/test_fast_paths.py
  phase bench 300 bench.log "$PY" -m experiments.benchmark --suite="${SUITE:-all}" \
    --references=plain_jax,single_steps --output="$OUT/bench.jsonl"
  tail -n 3 "$OUT/train.log" "$OUT/tests.log"
  [ -f "$OUT/bench.jsonl" ] && cut -c1-300 "$OUT/bench.jsonl"
}

case "${1:-}" in
  fetch) fetch ;;
  run) run ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
