#!/usr/bin/env bash
# The GPU checks of issue 11, as one script for a lent device machine (an NVIDIA GPU); under 8 minutes.
#
#   bash scripts/gpu_check.sh            # prints everything; writes $OUT/gpu_check/ (summary.json, logs) when OUT is set
#
# 1. the main job on CUDA: SmolLM2, bf16 compute over float32 master weights and float32 AdamW state, 40 steps,
#    with s/step, rollout tokens/s and MFU against (a) the measured bf16 matmul roofline of an 8192^2 product and
#    (b) the card's nominal dense bf16 peak (GPU_PEAK_TFLOPS, default 989 for an H100/H200 SXM);
# 2. the optimiser state's dtype after a CUDA step (fp32 whatever the compute dtype);
# 3. the tests that use CUDA when it is there (tests/ and lesson 11's bf16 checks run on the GPU);
# 4. a 2-process DDP run of the main job when the machine has 2 GPUs.
# Nothing here downloads: the model is the embedded SmolLM2; the python environment must already hold torch with CUDA.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-/tmp}/gpu_check"; mkdir -p "$OUT_DIR"
PY="${PYTHON:-python}"
export LMTRAIN_DATA="${LMTRAIN_DATA:-$PWD/../shared/data}"
"$PY" -c "import lmtrain" 2>/dev/null || "$PY" -m pip install -q --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" - <<'PY'
import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count(),
                    "bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
PY

echo "== 1. main job on CUDA (bf16 compute, fp32 master weights) =="
timeout 300 "$PY" -m lmtrain train --device cuda --dtype auto --steps 40 --eval-size 200 --eval-samples 4 \
    --out "$OUT_DIR/main" --overwrite --no-save-model 2>&1 | tail -n 15
"$PY" - "$OUT_DIR/main/summary.json" <<'PY'
import json, os, sys, torch
from lmtrain.trainer import matmul_roofline
import statistics
from pathlib import Path
s = json.load(open(sys.argv[1]))
steps = json.loads((Path(sys.argv[1]).parent / "history.json").read_text())["batch_logs"][1:]   # the first step warms up
flops = statistics.median(b["train_gflops"] * 1e9 for b in steps if b.get("train_gflops"))   # FLOP/s of the training pass
roof = matmul_roofline(torch.bfloat16, "cuda", n=8192)
peak = float(os.environ.get("GPU_PEAK_TFLOPS", 989)) * 1e12
keys = ["accuracy_before", "accuracy_after", "format_free_before", "format_free_after", "seconds_per_step_median",
        "generation_seconds_median", "training_seconds_median", "tokens_per_s_median", "mfu_median", "compute_dtype"]
for k in keys: print(f"{k:28s} {s.get(k)}")
print(f"training {flops / 1e12:.1f} TFLOP/s: MFU {flops / roof:.1%} of the measured bf16 roofline (8192^2 matmul, "
      f"{roof / 1e12:.0f} TFLOP/s), {flops / peak:.1%} of the nominal {peak / 1e12:.0f} TFLOP/s")
PY

echo "== 2. optimiser state dtype on CUDA =="
"$PY" - <<'PY'
import torch
from lmtrain.policy import Policy
from lmtrain.testing import tiny_model
from lmtrain.trainer import OptimConfig, make_optimizer
model, tok = tiny_model(seed=0); model.cuda()
policy = Policy(model, tok, compute_dtype=torch.bfloat16)
s = policy.sample(["2 + 3 ="], n=4, max_new_tokens=8, seed=0)
learner = policy.learner(); optimizer = make_optimizer(learner, OptimConfig())
lp, _ = learner.token_logprobs(s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask)
(-lp.sum()).backward(); optimizer.step()
dtypes = {str(v.dtype) for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v) and v.dim()}
print("weights", {str(p.dtype) for p in model.parameters()}, "optimiser state", dtypes, "fused", optimizer.defaults.get("fused"))
assert dtypes == {"torch.float32"}, dtypes
PY

echo "== 3. tests on the GPU =="
timeout 180 "$PY" -m pytest -q -x tests/test_distributed.py tests/test_cli.py 2>&1 | tail -n 3
nbdev_test --path nbs/11_policy.ipynb 2>&1 | tail -n 2

if [ "$("$PY" -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
  echo "== 4. 2-process DDP on 2 GPUs =="
  timeout 240 accelerate launch --num_processes 2 -m lmtrain train --device cuda --steps 10 --eval-size 50 \
      --out "$OUT_DIR/ddp" --overwrite --no-save-model 2>&1 | tail -n 6
else
  echo "== 4. skipped: one GPU =="
fi
