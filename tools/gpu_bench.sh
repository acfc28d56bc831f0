#!/usr/bin/env bash
# The GPU path, run: on a machine with a CUDA GPU, a venv of its own with a CUDA build of torch, the tests marked
# `cuda`, and `bac bench` of the paper-size and cpu configs, eager against the CUDA graph, DDIM-20 and DDPM-100.
# Usage: tools/gpu_bench.sh [OUT_DIR]   (default runs/gpu/<date>); `make bench-gpu` runs it.
# Environment: VENV (default .venv-gpu: the venv, or the folder for what a CUDA Python lacks); WHEELS: a folder of
# wheels to install from, offline (no index); TORCH_INDEX: where pip finds a CUDA torch when python3 has none
# (default PyTorch's cu126 index).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu/$(date +%Y-%m-%d_%H%M%S)}
VENV=${VENV:-.venv-gpu}
mkdir -p "$OUT"
log() { echo "[gpu_bench] $*" | tee -a "$OUT/steps.log"; }

# 1. torch with CUDA: a Python that has one is used as it is (never shadowed; what it lacks goes into a folder of
#    this run's); otherwise a venv of its own gets a CUDA build of torch
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  PY=python3
  SITE="$VENV/site"
  mkdir -p "$SITE"
  log "this Python's torch $(python3 -c 'import torch; print(torch.__version__)') sees a GPU: using it"
  install() { "$PY" -m pip install -q --target "$SITE" "$@"; }
else
  python3 -m venv "$VENV"
  PY="$VENV/bin/python"
  SITE=""
  log "installing a CUDA build of torch into $VENV"
  "$PY" -m pip install -q torch --index-url "${TORCH_INDEX:-https://download.pytorch.org/whl/cu126}"
  install() { "$PY" -m pip install -q "$@"; }
fi
# 2. what bac_ros' policy package needs beyond torch (diffusers for the samplers; the rest is usually there)
need=$(PYTHONPATH="$SITE" "$PY" - <<'PYEOF'
import importlib.util
mods = {"diffusers": "diffusers==0.42.1", "safetensors": "safetensors", "yaml": "pyyaml", "pytest": "pytest",
        "importlib_metadata": "importlib_metadata", "zipp": "zipp", "matplotlib": "matplotlib", "tqdm": "tqdm"}
print(" ".join(p for m, p in mods.items() if importlib.util.find_spec(m) is None))
PYEOF
)
if [ -n "$need" ]; then
  log "installing: $need"
  if [ -n "${WHEELS:-}" ]; then
    install --no-index --no-deps --find-links "$WHEELS" $need
  else
    install $need
  fi
fi
export PYTHONPATH="$PWD${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}" BAC_CACHE_DIR="$OUT/cache"
"$PY" - <<'PYEOF' | tee "$OUT/gpu.txt"
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device {torch.cuda.get_device_name(0)}")
PYEOF
# 3. the tests marked cuda
log "pytest -m cuda"
"$PY" -m pytest -q -m cuda -p no:cacheprovider test/policy/test_inference.py 2>&1 | tee "$OUT/pytest_cuda.txt" | tail -3
# 4. benches: schedules calibrated on the GPU for the untrained paper-size model (synthetic observations), then
#    eager against the CUDA graph on the same observations and noise
bench() {  # config, checkpoint, S, name, [a shipped schedule]
  local cfg=$1 ck=$2 s=$3 name=$4 sched=${5:-}
  if [ -z "$sched" ]; then
    sched="$OUT/$name.json"
    "$PY" -m bac_ros.cli schedule --config "$cfg" --checkpoint "$ck" --device cuda --method bac --num-updates "$s" \
      --observations 16 --out "$sched" > "$OUT/$name.schedule.log" 2>&1
  fi
  log "bench $cfg (S=$s)"
  "$PY" -m bac_ros.cli bench --config "$cfg" --checkpoint "$ck" --schedule "$sched" --device cuda --observations 8 \
    --repeats 3 --backend eager,cuda-graph --out-dir "$OUT/$name" > "$OUT/$name.log" 2>&1
  tail -5 "$OUT/$name/backends.md"
}
bench paper none 26 paper_ddpm100
bench paper_ddim20 none 7 paper_ddim20
bench cpu auto 7 cpu_ddim20 schedules/grasp_dpt_cpu/bac_s7.json
bench cpu_ddpm100 auto 26 cpu_ddpm100
log "done: $OUT"
