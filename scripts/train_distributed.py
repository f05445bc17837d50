"""`lmtrain train` on several processes: the same options, plus where the rollouts come from, under `accelerate launch`.

Each process holds a copy of the model (or, under FSDP2, a shard of it) and takes prompts_per_step / N of every
step's prompts (whole groups); DDP averages the gradients (FSDP2 reduce-scatters them), so the update is the one
a single process would take on the whole batch (see nbs/19_scaling.ipynb). Rank 0 writes every file.

    # 8 GPUs on one node (DDP over NCCL); prompts_per_step must be a multiple of 8
    accelerate launch --num_processes 8 scripts/train_distributed.py --prompts-per-step 32 --steps 200 --out runs/ddp8
    # 2 CPU processes (DDP over gloo): accelerate's --multi_gpu starts them through torchrun even with no GPU
    # (its --cpu flag starts one process unless given an MPI hostfile); `torchrun --nproc_per_node 2` is the same
    accelerate launch --multi_gpu --num_processes 2 scripts/train_distributed.py --model tiny --steps 2 --out runs/cpu2
    # weights, gradients and AdamW state sharded (FSDP2), on GPUs or, as CI tests it, on CPU processes
    accelerate launch --use_fsdp --fsdp_version 2 --num_processes 2 scripts/train_distributed.py --model tiny --steps 2 --out runs/fsdp2
    # rollouts from a vLLM server on other GPUs, weights pushed to it over NCCL after each update
    CUDA_VISIBLE_DEVICES=0 VLLM_SERVER_DEV_MODE=1 vllm serve HuggingFaceTB/SmolLM2-135M-Instruct \\
        --weight-transfer-config '{"backend": "nccl"}' --logprobs-mode processed_logprobs &
    CUDA_VISIBLE_DEVICES=1,2,3 accelerate launch --num_processes 3 scripts/train_distributed.py \\
        --model HuggingFaceTB/SmolLM2-135M-Instruct --prompts-per-step 24 --sampler server \\
        --server-url http://127.0.0.1:8000 --weight-sync vllm --out runs/vllm
"""
import json, sys, time
from dataclasses import dataclass, asdict
from pathlib import Path

import torch

from lmtrain.cli import RunConfig, parse_config, load_task, make_reward, HashAnswerCorrect
from lmtrain.distributed import DistributedTrainer, ServerSampler, SaveAndPost, VLLMWeightSync, make_accelerator
from lmtrain.trainer import CheckpointError, apply_lora, free_cpu_threads


@dataclass
class DistributedRunConfig(RunConfig):
    "Options of a distributed run: `lmtrain train`'s, plus the sampler."
    sampler: str = "policy"                  # policy (in-process, each rank samples its prompts) | server (OpenAI-compatible /v1/completions)
    server_url: str = "http://127.0.0.1:8000"  # base URL of the completion server (--sampler server)
    server_model: str | None = None          # model name the server serves (default: the first of GET /v1/models)
    n_per_request: int | None = None         # completions per request (1 for llama.cpp, which refuses n > 1)
    weight_sync: str = "none"                # none | vllm (NCCL into vLLM) | disk (save to OUT/served, POST /update_weights_from_disk)
    sync_every: int = 1                      # updates between weight syncs (more: cheaper, more off-policy)
    dtype: str | None = None                 # model dtype (default: bfloat16 on CUDA, float32 on CPU)


def load_model(config, device):
    "The model and tokenizer: `tiny` is lmtrain's tiny random test model; anything else goes to `load_causal_lm`."
    if config.model == "tiny":
        from lmtrain.testing import tiny_model
        return tiny_model(seed=config.seed, device=device)
    from lmtrain.local import load_causal_lm
    return load_causal_lm(config.model, device=device, dtype=config.dtype)


def make_sampler(config, policy, out: Path):
    if config.sampler == "policy": return None
    if config.sampler != "server": raise ValueError(f"unknown --sampler {config.sampler!r}: expected policy or server")
    sync = {"none": None, "vllm": lambda: VLLMWeightSync(every=config.sync_every),
            "disk": lambda: SaveAndPost(out / "served", every=config.sync_every)}
    if config.weight_sync not in sync: raise ValueError(f"unknown --weight-sync {config.weight_sync!r}: expected none, vllm or disk")
    return ServerSampler(policy, config.server_url, model=config.server_model, n_per_request=config.n_per_request,
                         weight_sync=sync[config.weight_sync]() if sync[config.weight_sync] else None)


def run(config: DistributedRunConfig) -> dict:
    from lmtrain.policy import Policy
    started = time.perf_counter()
    accelerator = make_accelerator(cpu=True if config.device == "cpu" else None)
    multi = accelerator.num_processes > 1
    torch.set_num_threads(config.threads or (1 if multi and accelerator.device.type == "cpu" else free_cpu_threads()))
    out = Path(config.out)
    if accelerator.is_main_process: out.mkdir(parents=True, exist_ok=True)
    train_data, eval_data = load_task(config)
    model, tokenizer = load_model(config, accelerator.device)
    if config.lora: model = apply_lora(model, config.lora_r, config.lora_alpha, config.lora_dropout)
    policy = Policy(model, tokenizer)
    ckpt = out / "checkpoints"
    trainer = DistributedTrainer(policy, make_reward(config.reward), train_data, config, sampler=make_sampler(config, policy, out),
                                 accelerator=accelerator, validation_data=eval_data, metric=HashAnswerCorrect(),
                                 checkpoint_dir=ckpt, rollouts_path=out / "rollouts.jsonl")
    resume = ckpt / "last" if config.resume and (ckpt / "last").exists() else None
    if resume: trainer.load(resume)
    accuracy_before = trainer.evaluate(step=trainer.step)[0]
    if accelerator.is_main_process:
        print(f"{accelerator.num_processes} process(es), {accelerator.distributed_type.value}, device {accelerator.device}; "
              f"held-out accuracy before: {accuracy_before:.1%}", file=sys.stderr)
    t0 = time.perf_counter()
    history = trainer.fit(progress=True)
    train_seconds = time.perf_counter() - t0
    accuracy_after = trainer.evaluate(step=trainer.step)[0]
    if config.save_model: trainer.save_model(out / "model")
    summary = {"accuracy_before": accuracy_before, "accuracy_after": accuracy_after, "steps": trainer.step,
               "processes": accelerator.num_processes, "distributed_type": accelerator.distributed_type.value,
               "train_seconds_this_run": round(train_seconds, 2),
               "seconds_per_step": round(train_seconds / max(len(history.batch_logs), 1), 3),
               "total_seconds_this_run": round(time.perf_counter() - started, 1), "config": asdict(config)}
    if accelerator.is_main_process:
        history.to_json(out / "history.json")
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        print(f"accuracy before {accuracy_before:.1%} -> after {accuracy_after:.1%} in {trainer.step} steps on "
              f"{accelerator.num_processes} process(es) ({summary['seconds_per_step']:.2f} s/step); wrote {out}/")
    accelerator.wait_for_everyone()
    return summary


def main(argv=None) -> int:
    config = parse_config(["train", *(sys.argv[1:] if argv is None else argv)], DistributedRunConfig)
    try: run(config)
    except (CheckpointError, FileNotFoundError, ValueError, NotImplementedError) as e:
        print(f"train_distributed: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
