#!/usr/bin/env bash
# The GPU check, for a CUDA machine that has a copy of this repo and no internet: builds `openrl`
# against that machine's CUDA PyTorch (-DOPENRL_WITH_CUDA=ON), runs the model parity tests, then
# the benchmarks with the peers (transformers / PEFT) in bf16 on the GPU, then the training API's
# packing and overhead benches with `openrl serve --device cuda --dtype bfloat16` (needs the SmolLM2
# GGUF under var/models, which `make setup` fetches; the device tool does not carry it by itself).
#
# The `openrl` CLI loads models on the CPU today (cli/model_loading.cc: at::kCPU). Until it takes
# `--device`, ours runs CPU-only: this script then says so, runs the CPU comparison on this
# machine's cores, and records the peers' GPU bf16 figures alone as the target to beat.
#
# Usage: bench/gpu/run.sh            results under $OUT (the device tool's folder) or bench/out/gpu
#   OPENRL_PYTHON=...   interpreter whose torch has CUDA (default: .venv, then python3)
#   WHEELHOUSE=DIR      offline wheels for requirements.lock, used when no interpreter has CUDA torch
set -uo pipefail
cd "$(dirname "$0")/../.."
RESULTS="${OUT:-$PWD/bench/out/gpu}"
mkdir -p "$RESULTS"
export OPENRL_BENCH_OUT="$RESULTS" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error \
  HF_HUB_DISABLE_PROGRESS_BARS=1
log() { echo "== gpu: $*" | tee -a "$RESULTS/summary.txt"; }
has_cuda_torch() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

# 1. An interpreter with CUDA PyTorch and the peers.
PY=""
for cand in "${OPENRL_PYTHON:-}" .venv/bin/python python3; do
  if [ -n "$cand" ] && has_cuda_torch "$cand"; then PY="$cand"; break; fi
done
if [ -z "$PY" ] && [ -n "${WHEELHOUSE:-}" ]; then
  log "creating .venv-gpu from requirements.lock (offline, $WHEELHOUSE)"
  python3 -m venv .venv-gpu && .venv-gpu/bin/pip install -q --no-index --find-links "$WHEELHOUSE" \
    --no-deps -r requirements.lock && PY=.venv-gpu/bin/python
fi
if [ -z "$PY" ] || ! has_cuda_torch "$PY"; then
  log "FAIL: no Python with CUDA-enabled torch (set OPENRL_PYTHON or WHEELHOUSE)"; exit 1
fi
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
"$PY" -c 'import torch, transformers, peft; print("torch", torch.__version__, "cuda", torch.version.cuda,
  torch.cuda.get_device_name(0), "| transformers", transformers.__version__, "| peft", peft.__version__)' \
  | tee -a "$RESULTS/summary.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >>"$RESULTS/summary.txt" 2>&1

# 2. Build the binary against that torch, with libtorch_cuda linked.
BUILD=build-gpu
log "configure + build ($BUILD, OPENRL_WITH_CUDA=ON)"
if cmake -S . -B "$BUILD" -G Ninja -DOPENRL_PYTHON="$PY" -DOPENRL_WITH_CUDA=ON >"$RESULTS/cmake.log" 2>&1 &&
   cmake --build "$BUILD" -j "$(nproc)" --target openrl >"$RESULTS/build.log" 2>&1; then
  BIN="$PWD/$BUILD/src/openrl/cli/openrl"
  ldd "$BIN" | grep -q libtorch_cuda && log "build OK, libtorch_cuda linked" || log "build OK, libtorch_cuda NOT linked"
else
  BIN=""; log "FAIL: build (tail of logs below; missing Debian dev packages cannot be installed offline)"
  tail -n 30 "$RESULTS/cmake.log" "$RESULTS/build.log" | tee -a "$RESULTS/summary.txt"
fi
export OPENRL_BUILD="$PWD/$BUILD"

# 3. Parity against transformers (these drive the CLI, hence run on the CPU today).
if [ -n "$BIN" ]; then
  log "parity tests (tests/test_model_parity.py)"
  "$PY" -m pytest tests/test_model_parity.py -q -p no:cacheprovider 2>&1 | tail -n 15 | tee -a "$RESULTS/summary.txt"
fi

# 4. Benchmarks. Ours on the GPU only if the CLI has --device.
THREADS="$(nproc)"
if [ -n "$BIN" ] && "$BIN" train --help 2>/dev/null | grep -q -- '--device'; then
  log "openrl has --device: ours vs peers, both cuda bf16"
  "$PY" bench/train_step.py --device cuda --dtype bfloat16 --threads "$THREADS" --out train_step_cuda
  "$PY" bench/sampling.py --device cuda --dtype bfloat16 --threads "$THREADS" --out sampling_cuda
else
  log "CPU-ONLY: openrl has no --device (LoadModelForCli uses at::kCPU); peers alone on cuda bf16"
  "$PY" bench/train_step.py --skip-ours --device cuda --dtype bfloat16 --out train_step_cuda
  "$PY" bench/sampling.py --skip-ours --device cuda --dtype bfloat16 --out sampling_cuda
  if [ -n "$BIN" ]; then
    log "CPU comparison on this machine's $THREADS threads (fp32, ours vs peers)"
    "$PY" bench/train_step.py --threads "$THREADS" --models llama-20m --out train_step_cpu
    "$PY" bench/sampling.py --threads "$THREADS" --out sampling_cpu
  fi
fi
# The training API on the GPU (packing target: 3 RL clients >= 2.5x one, engine busy >= 90%).
if [ -n "$BIN" ] && "$BIN" serve --help 2>/dev/null | grep -q -- '--device'; then
  if [ -f var/models/SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    log "Tinker API on cuda bf16: 1-3 RL clients, packed vs run-by-run, API overhead"
    OPENRL_SERVE_ARGS="--device cuda --dtype bfloat16" \
      "$PY" bench/tinker_packing.py 2>&1 | tee -a "$RESULTS/summary.txt"
    OPENRL_SERVE_ARGS="--device cuda --dtype bfloat16" \
      "$PY" bench/tinker_overhead.py 2>&1 | tee -a "$RESULTS/summary.txt"
  else
    log "SKIP Tinker API benches: var/models/SmolLM2-135M-Instruct.Q4_1.gguf is not on this machine"
  fi
fi
for f in "$RESULTS"/train_step_*.json; do
  [ -f "$f" ] && "$PY" bench/report.py "$f" "${f/train_step_/sampling_}" | tee -a "$RESULTS/summary.txt"
done
log "done: $RESULTS"
