#!/usr/bin/env bash
# The GPU path end to end on one GPU, in under 10 minutes: a few GRPO steps with compute=gpu and
# vLLM colocated, then eval=gpu (lighteval + vLLM) on the last checkpoint. Prints each stage's status
# and seconds, and exits non-zero at the first stage that fails (with its log's tail).
#
#   scripts/gpu-check.sh                 # a random model of DeepSeek-R1-Distill-Qwen-1.5B's exact shape
#                                        # (benchmarks/real_shape.py: no download; its answers are noise)
#   scripts/gpu-check.sh MODEL           # a local path or hub id of a Qwen2-architecture model, e.g.
#                                        # deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B (then the toy scores mean something)
#   scripts/gpu-check.sh --commands [MODEL [PYTHON]]   # print the training and evaluation arguments, run nothing
#
# Needs: an NVIDIA GPU; tina's environment with vLLM (pip install -c constraints.txt -e '.[vllm]'); registry access the
# first time, for lighteval's own environment (scripts/lighteval-env.sh --gpu: a few minutes once, then
# cached, and not part of the 10). Without a GPU it stops at the first stage, saying why.
# Knobs (environment): GPU_CHECK_DIR (work folder, default a new temp dir), GPU_CHECK_STEPS (3),
# GPU_CHECK_TOKENS (completion length, 256), TINA_LIGHTEVAL_PYTHON (an existing lighteval[vllm] python).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python}
MODEL=${1:-random}
WORK=${GPU_CHECK_DIR:-}
STEPS=${GPU_CHECK_STEPS:-3}
TOKENS=${GPU_CHECK_TOKENS:-256}
T0=$(date +%s)
declare -a REPORT=()

stage() {  # stage NAME COMMAND...: run it, log to $WORK/NAME.log, print status and seconds
  local name=$1; shift
  local start=$(date +%s.%N)
  echo "gpu-check: [$name] ..."
  if "$@" >"$WORK/$name.log" 2>&1; then
    local s=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
    echo "gpu-check: [$name] OK in ${s} s"
    REPORT+=("$name: OK ${s} s")
  else
    local rc=$? s=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
    echo "gpu-check: [$name] FAILED (exit $rc) after ${s} s; log $WORK/$name.log:" >&2
    tail -n 40 "$WORK/$name.log" >&2
    exit 1
  fi
}

preflight() {
  command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: this check needs an NVIDIA GPU"; return 1; }
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || return 1
  "$PY" - <<'EOF'
import importlib.util, sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no CUDA device (CPU build of torch? CUDA_VISIBLE_DEVICES?)")
if importlib.util.find_spec("vllm") is None:
    sys.exit("vLLM is not installed in tina's environment: pip install -c constraints.txt -e '.[vllm]'")
import vllm, trl
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0), "vllm", vllm.__version__, "trl", trl.__version__)
EOF
}

model() {
  if [ "$MODEL" = random ]; then
    MODEL=$WORK/model
    [ -f "$MODEL/config.json" ] || "$PY" benchmarks/real_shape.py "$MODEL" --dtype bfloat16
  fi
  echo "model: $MODEL"
}

lighteval_env() {
  if [ -n "${TINA_LIGHTEVAL_PYTHON:-}" ]; then echo "$TINA_LIGHTEVAL_PYTHON"; else bash scripts/lighteval-env.sh --gpu; fi
}

# One argument a line (paths may hold spaces): read back with mapfile.
train_args() {
  printf '%s\n' hydra.run.dir="$WORK/run" \
    model=deepseek_r1_distill_qwen_1_5b model.name_or_path="$MODEL" model.attn_implementation=sdpa \
    compute=gpu compute.num_processes=1 compute.vllm_max_model_length=$((TOKENS + 512)) \
    dataset=toy dataset.eval_size=0 algorithm.num_generations=4 algorithm.max_completion_length="$TOKENS" \
    train.prompts_per_step=2 train.max_steps="$STEPS" train.save_steps="$STEPS" wandb.mode=disabled
}

eval_args() {
  printf '%s\n' run_dir="$WORK/run" eval=gpu eval.lighteval_python="$LE" eval.checkpoints=last \
    eval.benchmarks=[toy] eval.toy_size=32 eval.n_samples=2 eval.seeds=[0] eval.max_new_tokens="$TOKENS" \
    eval.vllm.max_model_length=$((TOKENS + 512)) eval.vllm.gpu_memory_utilization=0.5
}

if [ "${1:-}" = "--commands" ]; then  # both commands' arguments, a line each, "--" between (tests/test_real_shape.py)
  MODEL=${2:-MODEL} LE=${3:-LIGHTEVAL_PYTHON} WORK=${WORK:-WORK}
  train_args; echo --; eval_args; exit 0
fi
WORK=${WORK:-$(mktemp -d /tmp/tina-gpu-check.XXXX)}
mkdir -p "$WORK"

train() {
  local args; mapfile -t args < <(train_args)
  "$PY" -m tina.train "${args[@]}"
  "$PY" - "$WORK/run" <<'EOF'
import json, sys
from pathlib import Path
from tina import run_dir as rd
run = Path(sys.argv[1])
summary = rd.read_summary(run)
steps = [json.loads(l) for l in (run / rd.METRICS).read_text().splitlines()]
assert summary["status"] == "completed", summary.get("error")
print(f"{summary['steps']} steps, {summary['wall_seconds']:.0f} s, step_time {[round(s.get('step_time', 0), 1) for s in steps]}, "
      f"reward {[round(s.get('reward', 0), 3) for s in steps]}, device {summary['device']}")
EOF
}

evaluate() {
  local args; mapfile -t args < <(eval_args)
  "$PY" -m tina.evaluate "${args[@]}"
}

echo "gpu-check: work folder $WORK"
stage preflight preflight
stage model model
MODEL=$(tail -n 1 "$WORK/model.log" | sed 's/^model: //')
stage lighteval-env lighteval_env
LE=$(tail -n 1 "$WORK/lighteval-env.log")
stage train train
tail -n 1 "$WORK/train.log"
stage evaluate evaluate
grep -E "pass@1" "$WORK/evaluate.log" | tail -n 3
echo "gpu-check: all stages passed in $(( $(date +%s) - T0 )) s:"
printf '  %s\n' "${REPORT[@]}"
