"""Worker of tests/test_distributed.py: trains a tiny random model with `DistributedTrainer` under however many
processes it was launched with (`python` for 1, `accelerate launch` for 2: DDP, or FSDP2) and saves what
the test compares: gradients and parameters after every update, the logs, the rollouts and checkpoints.

    python tests/distributed_worker.py OUT --tag w1
    accelerate launch --multi_gpu --num_processes 2 tests/distributed_worker.py OUT --tag w2 --resume OUT/ck_w1
    accelerate launch --use_fsdp --fsdp_version 2 --num_processes 2 tests/distributed_worker.py OUT --tag f2 --resume OUT/ck_w1
"""
import argparse
from pathlib import Path

import torch

from lmtrain.distributed import DistributedTrainer, make_accelerator, whole
from lmtrain.testing import tiny_model
from lmtrain.policy import Policy
from lmtrain.rewards import Reward, as_text
from lmtrain.trainer import TrainConfig, apply_lora, batch_indices


class Toy(Reward):
    "Even-length replies pay 1; the target 'flat' pays 0.5 whatever the reply (a zero-variance group)."
    name = "toy"
    def compute(self, y_true, y_pred): return 0.5 if y_true == "flat" else float(len(as_text(y_pred)) % 2 == 0)


SEED, N, P = 0, 8, 4


def data():
    "8 prompts; targets chosen so that with 2 ranks, rank 1 keeps no group at step 0 and the ranks keep 1 and 2 at step 1."
    step0, step1 = batch_indices(N, 0, P, SEED), batch_indices(N, 1, P, SEED)
    flat = set(step0[2:]) | {step1[0]}
    xs = [f"What is {a} + {2 * a + 1}?" for a in range(N)]
    return xs, ["flat" if i in flat else "vary" for i in range(N)]


CONFIGS = {   # name -> (TrainConfig options, updates to record)
    "grpo": (dict(algo="grpo", prompts_per_step=P, group_size=4, max_new_tokens=8), 4),
    # per-token loss with completions of unequal lengths (see `tiny`): each rank's weight is its share of the tokens;
    # no clipping, so that a wrong weight shows in the gradient's size and not only in its logged norm
    "reinforce_token": (dict(algo="reinforce", loss_aggregation="token", prompts_per_step=P, group_size=4, max_new_tokens=8,
                             max_grad_norm=1e6), 2),
    "grpo_minibatch": (dict(algo="grpo", prompts_per_step=P, group_size=4, max_new_tokens=8, mini_batch_size=3,
                            num_iterations=2), 1),
    # a KL penalty against the frozen start (under FSDP the reference is sharded too): KL > 0 from the second update
    "grpo_kl": (dict(algo="grpo", prompts_per_step=P, group_size=4, max_new_tokens=8, beta=0.5), 3),
    # LoRA (frozen base, trainable adapters) with the adapter-off reference
    "grpo_lora_kl": (dict(algo="grpo", prompts_per_step=P, group_size=4, max_new_tokens=8, beta=0.5, lora=True, r=4,
                          alpha=8), 3),
}


def tiny(eos_often: bool = False):
    "The tiny random model; `eos_often` gives EOS a logit row of its own (it is the pad row, all zeros) so lengths vary."
    model, tokenizer = tiny_model(seed=0)
    if eos_often:
        with torch.no_grad():
            model.lm_head.weight[tokenizer.eos_token_id] = 0.5 * torch.randn(model.config.hidden_size,
                                                                              generator=torch.Generator().manual_seed(1))
    return model, tokenizer


def trainer(accelerator, name, out, tag):
    options, _ = CONFIGS[name]
    config = TrainConfig(temperature=1.0, learning_rate=1e-3, eval_every=1, checkpoint_every=0, seed=SEED, **options)
    model, tokenizer = tiny(eos_often=name == "reinforce_token")
    if config.lora.enabled: model = apply_lora(model, config.lora)
    return DistributedTrainer(Policy(model, tokenizer), Toy(), data(), config, accelerator=accelerator,
                              rollouts_path=out / f"rollouts_{tag}_{name}.jsonl")


def flat_params(t) -> torch.Tensor:
    return torch.cat([whole(p.detach()).flatten().cpu() for p in t.learner.model.parameters()])


def record(t, updates: int, save_at: int | None = None, ckpt=None) -> list[dict]:
    "Run to `updates` steps one step at a time; after each: gradients the optimizer stepped with, parameters, logs."
    grads = []
    t.optimizer.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: grads.append(torch.cat([whole(p.grad).flatten().cpu() for p in t.learner.model.parameters()
                                                          if p.requires_grad])))
    steps = []
    while t.step < updates:
        t.fit(steps=t.step + 1, progress=False)
        steps.append({"step": t.step, "params": flat_params(t), "grads": list(grads), "logs": t.history.batch_logs[-1]})
        grads.clear()
        if save_at is not None and t.step == save_at: t.save(ckpt)
    return steps


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--resume", type=Path, default=None, help="a checkpoint (at step 2) to continue to step 4")
    ap.add_argument("--only-resume", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    acc = make_accelerator(cpu=True)
    results = {"world_size": acc.num_processes, "distributed_type": acc.distributed_type.value}
    if not args.only_resume:
        for name, (_, updates) in CONFIGS.items():
            t = trainer(acc, name, args.out, args.tag)
            results[name] = record(t, updates, save_at=2 if name == "grpo" else None, ckpt=args.out / f"ck_{args.tag}")
        if acc.num_processes > 1:
            try: DistributedTrainer(Policy(*tiny_model(seed=0)), Toy(), data(),
                                                  TrainConfig(prompts_per_step=3), accelerator=acc)
            except ValueError as e: results["indivisible_error"] = str(e)
    if args.resume is not None:
        t = trainer(acc, "grpo", args.out, args.tag + "_resumed")
        t.load(args.resume)
        results["resumed"] = record(t, 4)
    results["distributed_type_after"] = acc.distributed_type.value   # accelerate can reset it when preparing
    if acc.is_main_process: torch.save(results, args.out / f"{args.tag}.pt")
    acc.wait_for_everyone()


if __name__ == "__main__":
    main()
