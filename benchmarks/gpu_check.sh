#!/usr/bin/env bash
# GPU check for the scale-out work, on one GPU, within about 10 minutes:
#   1. bf16 search and prompt tuning on smollm2-135m and gemma3-270m: seconds per search iteration
#      and per tuning step, peak GPU memory (lines starting RESULT);
#   2. the same seeds on 1 and on 2 processes (torchrun; both on this GPU with the gloo backend when
#      there is one GPU, nccl when there are two or more), in float32 and bfloat16: same trigger and
#      same prompt within tolerance (lines starting EQUALITY);
#   3. search and prompt tuning over bitsandbytes 8- and 4-bit weights on the first model (RESULT lines
#      with quantize=; installs a wheel from .whl/ when the package is missing).
# Usage: benchmarks/gpu_check.sh            (PYTHON=... to choose the interpreter; GPU_CHECK_MODELS,
#        GPU_CHECK_SECONDS=540 the time budget, GPU_CHECK_OUT=runs/gpu_check where the files go)
# A model alias that is not installed is skipped with a note (make setup; make setup-gemma).
# A GPU machine that cannot receive the real weights (a lent one takes 64 MiB): export the
# architectures here (`python -m benchmarks.random_weights export gemma3-270m .gpu/gemma3-270m`, the
# same for smollm2-135m; .gpu/ is git-ignored, carry it), build seeded random weights there
# (`python -m benchmarks.random_weights build .gpu/gemma3-270m`), then
# GPU_CHECK_MODELS=".gpu/smollm2-135m .gpu/gemma3-270m": speeds, memory and equality are the real
# architectures'; accuracies mean nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v python3)
MODELS=${GPU_CHECK_MODELS:-"smollm2-135m gemma3-270m"}
BUDGET=${GPU_CHECK_SECONDS:-540}
OUT=${GPU_CHECK_OUT:-runs/gpu_check}
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
STATUS=0

say() { echo "[gpu_check $(date +%H:%M:%S) +${SECONDS}s] $*"; }
left() { echo $(( BUDGET - SECONDS )); }
# step SECONDS CMD...: run CMD with a timeout, unless the budget is spent; a failure is reported, not fatal
step() {
    local limit=$1; shift
    if [ "$(left)" -lt 20 ]; then say "SKIPPED (time budget spent): $*"; STATUS=1; return 0; fi
    [ "$limit" -gt "$(left)" ] && limit=$(left)
    say "run (limit ${limit}s): $*"
    if ! timeout --kill-after=10 "$limit" "$@"; then say "FAILED or timed out: $*"; STATUS=1; fi
}

"$PY" - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: no CUDA GPU visible to torch {torch.__version__}; run this on a GPU machine")
props = torch.cuda.get_device_properties(0)
print(f"torch {torch.__version__}, {torch.cuda.device_count()} GPU(s): {props.name}, "
      f"{props.total_memory / 2**30:.0f} GiB; bf16 supported: {torch.cuda.is_bf16_supported()}")
EOF
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -lt 2 ]; then export FROZEN_LM_DIST_BACKEND=gloo; fi  # two processes share the one GPU
TORCHRUN=("$PY" -m torch.distributed.run --standalone --nproc-per-node 2)

for model in $MODELS; do
    if ! "$PY" -c "import sys; from frozen_lm.registry import ALIASES, is_installed; sys.exit(0 if sys.argv[1] not in ALIASES or is_installed(sys.argv[1]) else 1)" "$model"; then
        say "skip $model: not installed (make setup / make setup-gemma)"; STATUS=1; continue
    fi
    # the first load dequantizes the GGUF file into the cache (once; about a minute for gemma3-270m)
    step 180 "$PY" -c "from frozen_lm.model import FrozenLM; FrozenLM.load('$model', device='cpu')"
    step 150 "$PY" -m benchmarks.gpu_check speed --model "$model" --dtype bfloat16 --iters 5 --steps 20
    for dtype in float32 bfloat16; do
        tag=$(basename "$model")  # an alias, or a model folder's name
        one="$OUT/$tag-$dtype-1.pt"; two="$OUT/$tag-$dtype-2.pt"
        rm -f "$one" "$two"
        step 90 "$PY" -m benchmarks.gpu_check run --model "$model" --dtype "$dtype" --save "$one"
        step 120 "${TORCHRUN[@]}" -m benchmarks.gpu_check run --model "$model" --dtype "$dtype" --save "$two"
        if [ -f "$one" ] && [ -f "$two" ]; then
            step 30 "$PY" -m benchmarks.gpu_check compare "$one" "$two" --model "$model" --dtype "$dtype"
        else
            say "no EQUALITY line for $model $dtype (a run above failed)"; STATUS=1
        fi
    done
done
# 3. bitsandbytes 8- and 4-bit linear layers (RESULT lines with quantize=): a lent machine has no network,
#    so carry a wheel in .whl/ (`pip download bitsandbytes --no-deps -d .whl`, 43 MB; .whl/ is git-ignored)
if ! "$PY" -c "import bitsandbytes" 2>/dev/null; then
    whl=$(ls .whl/bitsandbytes-*.whl 2>/dev/null | head -n 1 || true)
    [ -n "$whl" ] && step 120 "$PY" -m pip install --quiet --no-deps "$whl"
fi
if "$PY" -c "import bitsandbytes" 2>/dev/null; then
    step 240 "$PY" -m benchmarks.gpu_check quant --model "${MODELS%% *}" --iters 3 --steps 10
else
    say "skip bitsandbytes: not installed (pip install bitsandbytes, or put its wheel in .whl/)"; STATUS=1
fi
say "done in ${SECONDS}s (status $STATUS)"
exit "$STATUS"
