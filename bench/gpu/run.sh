#!/usr/bin/env bash
# The GPU check, in one call, on a lent CUDA machine that has a copy of this repo and no network.
# Prepare here first: `bench/gpu/stage.sh` writes .gpu/ (the CLI linked against libtorch_cuda, the
# shared libraries it needs, the tinker SDK's wheels, SmolLM2's config and tokenizer); the device
# tool carries it (carry: [".gpu"]). Then, there:
#
#   1. the model parity tests with our side on the GPU (tests/test_model_parity.py,
#      OPENRL_TEST_DEVICE=cuda: fp32 logits within 1e-4 of transformers, greedy tokens identical,
#      half precision against transformers' half precision on the same GPU);
#   2. the training API on the GPU (bench/tinker_packing.py: 1-3 RL clients through the real tinker
#      SDK, packed vs run-by-run; target 3 clients >= 2.5x one, engine busy >= 90%), on a model of
#      SmolLM2-135M's shape with random weights (the GGUF is larger than the tool carries);
#   3. training steps, ours vs transformers + PEFT, both cuda bf16 (bench/train_step.py);
#   4. decode, ours vs transformers' generate, both cuda bf16 (bench/sampling.py), also through a
#      LoRA adapter against PEFT;
#   5. the training API's own overhead per call (bench/tinker_overhead.py);
#   and before 2, the Tinker API tests that hold without real weights, against a cuda server.
# Each part has a time box; $OUT gets summary.txt and gpu-results.tgz (the benches' JSON and logs).
#
# Usage: bench/gpu/run.sh [SECONDS]   total time box (default 450)
#   GPU_PARTS=a,b   only these parts (parity, api, packing, train_step, sampling, sampling_lora, overhead)
#   GPU_DEVICE=cpu  a dry run of the same steps on this CPU machine (small sizes), to check the script
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO="$PWD"
START=$(date +%s)
END=$((START + ${1:-450}))
WORK="$(mktemp -d /tmp/openrl-gpu.XXXX)"
# Results gather under $WORK/results and leave as one archive (the device tool returns few files):
# $OUT/gpu-results.tgz beside $OUT/summary.txt, or bench/out/gpu/ here.
DEST="${OUT:-$REPO/bench/out/gpu}"
RESULTS="$WORK/results"
mkdir -p "$RESULTS" "$DEST"
finish() {
  mkdir -p "$RESULTS/server-logs"
  for d in /tmp/openrl-bench-*; do [ -f "$d/server.log" ] && cp "$d/server.log" "$RESULTS/server-logs/$(basename "$d").log"; done
  cp "$RESULTS/summary.txt" "$DEST/summary.txt" 2>/dev/null
  tar -czf "$DEST/gpu-results.tgz" --exclude=./models -C "$RESULTS" .
}
trap finish EXIT
export OPENRL_BENCH_OUT="$RESULTS" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error \
  HF_HUB_DISABLE_PROGRESS_BARS=1 TINKER_TELEMETRY=0
DEVICE="${GPU_DEVICE:-cuda}"
log() { echo "== gpu [$(($(date +%s) - START))s]: $*" | tee -a "$RESULTS/summary.txt"; }
# part NAME SECONDS CMD...: runs CMD in a time box (never past the total), output to NAME.log.
part() {
  local name="$1" box="$2"; shift 2
  case ",${GPU_PARTS:-all}," in *",all,"*|*",$name,"*) ;; *) return 0 ;; esac
  local left=$((END - $(date +%s) - 10))
  [ "$left" -lt "$box" ] && box="$left"
  if [ "$box" -lt 20 ]; then log "SKIP $name: out of time"; return 1; fi
  log "$name (time box ${box}s)"
  local t0=$(date +%s)
  timeout -k 5 "$box" "$@" >"$RESULTS/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$RESULTS/$name.log" | tee -a "$RESULTS/summary.txt"
  log "$name: rc=$rc in $(($(date +%s) - t0))s"
  return $rc
}

# The interpreter: that machine's python3 holds CUDA PyTorch, transformers and PEFT.
PY="${OPENRL_PYTHON:-python3}"
if [ "$DEVICE" = cpu ]; then PY="${OPENRL_PYTHON:-$REPO/.venv/bin/python}"; fi
if [ "$DEVICE" != cpu ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  log "FAIL: $PY has no CUDA-enabled torch"; exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee -a "$RESULTS/summary.txt"

# The bundle from stage.sh: libraries, the binary behind a wrapper that finds them, the SDK's wheels.
[ -f .gpu/openrl ] || { log "FAIL: .gpu/openrl missing (run bench/gpu/stage.sh here and carry .gpu)"; exit 1; }
tar -xJf .gpu/lib.tar.xz -C "$WORK"
if ! "$PY" -c 'import tinker' 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
    .gpu/whl/*.whl >"$RESULTS/pip.log" 2>&1 || { log "FAIL: wheels"; tail "$RESULTS/pip.log"; exit 1; }
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
TORCH_LIB="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export OPENRL_BUILD="$WORK/build"
BIN="$OPENRL_BUILD/src/openrl/cli/openrl"
mkdir -p "$(dirname "$BIN")"
cat >"$BIN" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$WORK/lib:$TORCH_LIB" exec "$REPO/.gpu/openrl" "\$@"
EOF
chmod +x "$BIN"
"$PY" -c 'import torch, transformers, peft, tinker; print("torch", torch.__version__, "cuda", torch.version.cuda,
  "| transformers", transformers.__version__, "| peft", peft.__version__, "| tinker", tinker.__version__)' \
  2>&1 | tee -a "$RESULTS/summary.txt"
ldd "$REPO/.gpu/openrl" >/dev/null 2>&1; LD_LIBRARY_PATH="$WORK/lib:$TORCH_LIB" ldd "$REPO/.gpu/openrl" \
  | grep -E "not found|libtorch_cuda" | tee -a "$RESULTS/summary.txt"

# SmolLM2-135M's shape with random weights (seeded), bf16, with the real tokenizer and chat template.
export OPENRL_SMOLLM2_MODEL="$WORK/smollm2"
"$PY" - <<EOF 2>&1 | tee -a "$RESULTS/summary.txt"
import pathlib, shutil, torch, transformers
src, dst = pathlib.Path("$REPO/.gpu/smollm2"), pathlib.Path("$OPENRL_SMOLLM2_MODEL")
cfg = transformers.AutoConfig.from_pretrained(src)
torch.manual_seed(0)
model = transformers.AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16)
model.save_pretrained(dst)
for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
    if (src / f).exists():
        shutil.copy(src / f, dst / f)
print("smollm2-shape model:", sum(p.numel() for p in model.parameters()), "parameters, random weights")
EOF

SERVE="--device $DEVICE --dtype bfloat16"
if [ "$DEVICE" = cpu ]; then
  SERVE="--device cpu --dtype float32"
  part parity 300 env OPENRL_TEST_DEVICE=cpu "$PY" -m pytest tests/test_model_parity.py -q -p no:cacheprovider \
    -k "llama and (logits or greedy)"
  part api 600 env OPENRL_SERVE_ARGS="$SERVE" "$PY" -m pytest tests/test_tinker_api.py -q -p no:cacheprovider \
    -k "service_surface or builtin_loss or packed_into_one_pass or seq_id_order or joins_a_running or bad_input"
  part packing 300 env OPENRL_SERVE_ARGS="$SERVE" "$PY" bench/tinker_packing.py --parts rl --clients 1,2 --steps 1 \
    --calib-steps 1
  part train_step 300 "$PY" bench/train_step.py --models llama-20m --modes lora --steps 2 --warmup 1 --out train_step_dry
  part sampling 200 "$PY" bench/sampling.py --model llama-20m --prompts 2 --new-tokens 8 --rounds 1 --out sampling_dry
  part sampling_lora 200 "$PY" bench/sampling.py --model llama-20m --prompts 2 --new-tokens 8 --rounds 1 \
    --lora-rank 8 --out sampling_lora_dry
  log "dry run done: $RESULTS"; exit 0
fi

part parity 150 env OPENRL_TEST_DEVICE="$DEVICE" "$PY" -m pytest tests/test_model_parity.py -q -p no:cacheprovider
# The Tinker API tests whose outcome does not hang on real weights, through the SDK against a cuda
# server (fp32: a sample's logprobs are compared with compute_logprobs at 1e-4).
part api 120 env OPENRL_SERVE_ARGS="--device $DEVICE --dtype float32" "$PY" -m pytest tests/test_tinker_api.py -q \
  -p no:cacheprovider -k "service_surface or builtin_loss or packed_into_one_pass or seq_id_order or joins_a_running or bad_input"
part packing 180 env OPENRL_SERVE_ARGS="$SERVE" "$PY" bench/tinker_packing.py --out tinker_packing_cuda
part train_step 110 "$PY" bench/train_step.py --device "$DEVICE" --dtype bfloat16 --threads 16 \
  --models llama-120m,smollm2-shape --modes full,lora --batch 8 --seq 512 --steps 8 --warmup 3 --out train_step_cuda
part sampling 60 "$PY" bench/sampling.py --device "$DEVICE" --dtype bfloat16 --threads 16 --model smollm2-shape \
  --prompts 16 --new-tokens 128 --out sampling_cuda
part sampling_lora 60 "$PY" bench/sampling.py --device "$DEVICE" --dtype bfloat16 --threads 16 \
  --model smollm2-shape --prompts 16 --new-tokens 128 --lora-rank 16 --out sampling_lora_cuda
part overhead 60 env OPENRL_SERVE_ARGS="$SERVE" "$PY" bench/tinker_overhead.py --out tinker_overhead_cuda
for f in "$RESULTS"/train_step_*.json; do
  [ -f "$f" ] && "$PY" bench/report.py "$f" "${f/train_step_/sampling_}" "${f/train_step_/sampling_lora_}" 2>&1 | tee -a "$RESULTS/summary.txt"
done
log "done: $RESULTS"
