"""GRPO step time and reward, lmtrain against TRL's `GRPOTrainer`, same configuration, same run, same machine.

What it measures. Three training runs of the embedded SmolLM2-135M-Instruct on lmtrain's addition task
(the prompts of `lmtrain train`: "What is a + b? End your reply with '#### ' followed by the number.", chat
template applied), one after the other in this process, each from a freshly loaded model:

1. lmtrain `Trainer` as `lmtrain train` builds it (`lmtrain.cli.run`), `zero_variance='skip'` (lmtrain's default:
   a group whose completions all got the same reward carries no gradient and is not trained on);
2. the same with `zero_variance='keep'`: every completion goes through the backward pass, as in TRL, so the raw
   step is compared like for like;
3. TRL's `GRPOTrainer`.

For each: seconds per step (median and mean, the first step left out as warm-up; wall time from step begin to
step end, generation + scoring + backward + optimizer step; also the process CPU time per step, which other
processes on a shared machine inflate less), split into generation+scoring and training, the
mean training reward over the N steps (and of the last step), and the held-out greedy accuracy after training
(`lmtrain.trainer.evaluate_policy`, the metric of `lmtrain train`, the same code for all three). The target
(the issue's): lmtrain at least 2x faster per step (TRL s/step / lmtrain s/step >= 2) at equal or better reward.

    pip install -e ".[bench]"                        # installs TRL (trl>=0.20)
    python scripts/bench_trl_grpo.py --steps 5       # ~10-20 min on 2 idle CPU cores
    python scripts/bench_trl_grpo.py --steps 5 --threads 1   # when other processes keep a core busy
    python scripts/bench_trl_grpo.py --steps 5 --eval-size 0 --json   # no held-out evaluation; JSON line too

Configuration equivalence (both sides):
  model        `lmtrain.local.load_causal_lm(--model)`, float32 on CPU, `torch.set_num_threads(--threads)`;
               TRL gets the loaded model object and its tokenizer (so dtype and pad token are the same)
  prompts      `lmtrain.cli.load_task` (train split, seed --seed); step k uses the same prompts on both sides:
               TRL's dataset is laid out in lmtrain's batch order (`Trainer.batch(k)`) with `shuffle_dataset=False`
  chat format  lmtrain's `Policy.format_prompts` renders the chat template once; TRL gets the rendered strings
               (standard, not conversational, prompts; the script checks both tokenize to the same ids)
  reward       `lmtrain.cli.make_reward('format_then_correct')`; TRL calls it through `lmtrain.rewards.to_trl`,
               the gold answer passed as the dataset column `answer`
  sampling     group size = `num_generations`, prompts per step = `generation_batch_size / num_generations`,
               `max_new_tokens` = `max_completion_length`, temperature, top_p=1, no top-k
  update       one optimiser step per batch of samples (TRL: `per_device_train_batch_size` = prompts x group,
               `gradient_accumulation_steps=1`, `steps_per_generation=1`; lmtrain: `mini_batch_size=None`),
               `num_iterations=1`, `beta=0` (no reference model), clip eps 0.2 / 0.28 (`epsilon`, `epsilon_high`),
               advantages (r - group mean) / (group std + 1e-4) (`scale_rewards='group'`), per-sequence mean loss
               (lmtrain `loss_aggregation='sequence'` = TRL `loss_type='grpo'`), truncated completions trained on,
               AdamW (torch, betas 0.9/0.999, eps 1e-8, no weight decay), constant learning rate (TRL:
               `lr_scheduler_type='constant'`), gradient clipping at 1.0, no gradient checkpointing (TRL's
               default turns it on; lmtrain has none), bf16 off, no vLLM, no logging backends, no checkpoints.

Differences that could not be removed:
  - the random streams: the same seed, but lmtrain samples with a per-step seeded generator and TRL with the
    global RNG inside `model.generate`, so the completions (and so rewards and updates) differ sample by sample;
  - the implementations being compared: lmtrain prefills each prompt once and shares its KV cache across the
    group and drops finished rows while decoding, and its training pass runs each prompt once and shares that
    prefix across the group; TRL calls `model.generate` on prompts x group rows and trains on them row by row;
  - with `zero_variance='skip'` lmtrain averages the loss over the kept completions only (the gradient of the
    kept groups is not diluted by zero-advantage rows); 'keep' averages over all rows, as TRL does. The
    zero-advantage rows add nothing to the gradient, so the two differ by a factor per step, which AdamW
    almost cancels: 'skip' and 'keep' train nearly alike and differ mainly in time;
  - lmtrain's `Trainer` appends each step's rollouts to a JSONL file (as `lmtrain train` does; a few ms, inside
    its step time); TRL keeps its metrics in memory. lmtrain's checkpoints are off, like TRL's saving.
  - TRL gets the prompts as rendered strings, not as chat messages, so its completions reach the reward as
    plain strings, as lmtrain's do. (`to_trl` also scores conversational completions, by their message text;
    the rendered prompt keeps the two sides' token ids identical, which the script checks.)
"""
import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path


def summarise(times: list[float], cpu: list[float], gen: list[float], train: list[float], rewards: list[float],
              step_rewards: list[float], accuracy: float | None, **extra) -> dict:
    "Step-time statistics with the first (warm-up) step left out, and the reward over all steps."
    timed = times[1:] if len(times) > 1 else times
    cpu_timed = cpu[1:] if len(cpu) > 1 else cpu
    mean_reward = sum(rewards) / len(rewards)
    se = statistics.stdev(rewards) / math.sqrt(len(rewards)) if len(rewards) > 1 else float("nan")
    return dict(steps=len(times), step_s=times, median_s=statistics.median(timed), mean_s=sum(timed) / len(timed),
                cpu_step_s=cpu, cpu_median_s=statistics.median(cpu_timed),
                gen_median_s=statistics.median(gen[1:] or gen), train_median_s=statistics.median(train[1:] or train),
                reward_mean=mean_reward, reward_se=se, reward_last=step_rewards[-1], reward_per_step=step_rewards,
                accuracy_after=accuracy, **extra)


def load_model(config):
    import torch
    from lmtrain.local import load_causal_lm
    model, tokenizer = load_causal_lm(config.model, device="cpu", dtype=torch.float32)
    return model, tokenizer


def run_lmtrain(config, eval_data, evaluate_before: bool) -> dict:
    "lmtrain's `Trainer`, built as `lmtrain.cli.run` builds it (no checkpoints); wall time per step from callbacks."
    from lmtrain.callbacks import LambdaCallback
    from lmtrain.cli import HashAnswerCorrect, load_task, make_reward
    from lmtrain.policy import Policy
    from lmtrain.rollouts import load_rollouts
    from lmtrain.trainer import Trainer
    train_data, _ = load_task(config)
    model, tokenizer = load_model(config)
    with tempfile.TemporaryDirectory() as tmp:
        rollouts_path = Path(tmp) / "rollouts.jsonl"
        trainer = Trainer(Policy(model, tokenizer), make_reward(config.reward), train_data, config,
                          validation_data=eval_data, metric=HashAnswerCorrect(), rollouts_path=rollouts_path)
        before = trainer.evaluate(step=0)[0] if evaluate_before and eval_data else None
        starts, times, cpu = [], [], []
        def begin(batch, logs=None): starts.append((time.perf_counter(), time.process_time()))
        def end(batch, logs=None):
            times.append(time.perf_counter() - starts[-1][0]); cpu.append(time.process_time() - starts[-1][1])
        timer = LambdaCallback(on_batch_begin=begin, on_batch_end=end)
        history = trainer.fit(callbacks=[timer], progress=False)
        rewards = [float(r.reward) for r in load_rollouts(rollouts_path)]
    logs = history.batch_logs
    accuracy = history.history["val_score"][-1] if eval_data else None
    return summarise(times, cpu, [b["time_generate"] for b in logs], [b["time_train"] for b in logs], rewards,
                     [b["reward_mean"] for b in logs], accuracy, accuracy_before=before,
                     groups_trained=[b.get("groups_trained") for b in logs],
                     completion_len=sum(b["completion_len"] for b in logs) / len(logs))


def run_trl(config, eval_data, out_dir: str) -> dict:
    "TRL's `GRPOTrainer` on the same prompts (in lmtrain's batch order), reward, model and options."
    import torch
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer
    from lmtrain.cli import HashAnswerCorrect, gold_value, load_task, make_reward
    from lmtrain.policy import Policy
    from lmtrain.rewards import to_trl
    from lmtrain.trainer import batch_indices, default_prompt, evaluate_policy
    (x, y), _ = load_task(config)
    model, tokenizer = load_model(config)
    policy = Policy(model, tokenizer)
    order = [i for k in range(config.steps) for i in batch_indices(len(x), k, config.prompts_per_step, config.seed)]
    texts = policy.format_prompts([default_prompt(x[i]) for i in order])
    same_ids = policy.encode_prompts(texts[:1])[0][0].tolist() == tokenizer(text=texts[:1])["input_ids"][0]
    if not same_ids: raise RuntimeError("TRL would tokenize the rendered prompt differently from lmtrain")
    dataset = Dataset.from_dict({"prompt": texts, "answer": [gold_value(y[i]) for i in order]})

    reward_fn, seen = to_trl(make_reward(config.reward)), []
    def reward(prompts=None, completions=None, **columns):   # records every reward; same values as reward_fn
        values = reward_fn(prompts, completions, **columns)
        seen.append(values)
        return values
    reward.__name__ = reward_fn.__name__

    group = config.group_size
    args = GRPOConfig(
        output_dir=out_dir, report_to="none", save_strategy="no", eval_strategy="no", logging_steps=1,
        disable_tqdm=True, use_cpu=True, bf16=False, fp16=False, seed=config.seed, data_seed=config.seed,
        max_steps=config.steps, shuffle_dataset=False, dataloader_pin_memory=False,
        per_device_train_batch_size=config.prompts_per_step * group, gradient_accumulation_steps=1,
        steps_per_generation=1, num_generations=group, max_completion_length=config.max_new_tokens,
        temperature=config.temperature, top_p=config.top_p, top_k=0, use_vllm=False,
        learning_rate=config.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm, optim="adamw_torch",
        gradient_checkpointing=False, beta=config.beta, num_iterations=config.num_iterations,
        epsilon=config.eps_low, epsilon_high=config.eps_high, scale_rewards=config.scale_rewards, loss_type="grpo",
        mask_truncated_completions=False)

    class StepTimer(TrainerCallback):
        def __init__(self): self.starts, self.times, self.cpu, self.logs, self.threads = [], [], [], [], set()
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kw):
            self.setup = dict(optimizer=type(getattr(optimizer, "optimizer", optimizer)).__name__, training_dtype=str(next(model.parameters()).dtype),
                              gradient_checkpointing=bool(getattr(model, "is_gradient_checkpointing", False)))
        def on_step_begin(self, args, state, control, **kw):
            self.threads.add(torch.get_num_threads()); self.starts.append((time.perf_counter(), time.process_time()))
        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self.starts[-1][0])
            self.cpu.append(time.process_time() - self.starts[-1][1])
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs: self.logs.append(dict(logs))

    timer = StepTimer()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)     # the table below reports what it would print
    generation_s = []
    generate = trainer._generate_and_score_completions
    def timed_generate(*a, **kw):    # sampling + scoring, to split the step like lmtrain's time_generate
        t0 = time.perf_counter()
        try: return generate(*a, **kw)
        finally: generation_s.append(time.perf_counter() - t0)
    trainer._generate_and_score_completions = timed_generate
    trainer.train()
    accuracy = None
    if eval_data:
        prompts, targets = [default_prompt(xi) for xi in eval_data[0]], list(eval_data[1])
        accuracy = evaluate_policy(Policy(trainer.model, tokenizer), prompts, targets, HashAnswerCorrect(),
                                   max_new_tokens=config.max_new_tokens)[0]
    rewards = [v for batch in seen for v in batch]
    train_s = [t - g for t, g in zip(timer.times, generation_s)]
    return summarise(timer.times, timer.cpu, generation_s, train_s, rewards, [l["reward"] for l in timer.logs], accuracy,
                     trl_version=trl.__version__, threads_seen=sorted(timer.threads), **timer.setup,
                     completion_len=sum(l.get("completions/mean_length", float("nan")) for l in timer.logs) / len(timer.logs))


def load() -> str:
    try: return "load %.2f %.2f %.2f" % os.getloadavg()
    except OSError: return "load ?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="training steps per run (the first is left out of the timing)")
    ap.add_argument("--prompts-per-step", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=6, help="completions per prompt (TRL num_generations)")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="completion length cap (TRL max_completion_length)")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--learning-rate", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads for both")
    ap.add_argument("--eval-size", type=int, default=50, help="held-out problems for greedy accuracy (0: skip)")
    ap.add_argument("--model", default="local/smollm2-135m-instruct")
    ap.add_argument("--skip-keep", action="store_true", help="leave out the lmtrain zero_variance='keep' run")
    ap.add_argument("--skip-trl", action="store_true", help="leave out the TRL run")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = ap.parse_args()

    import torch
    import transformers
    from lmtrain.cli import RunConfig, load_task
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)

    def config(zero_variance: str) -> RunConfig:
        return RunConfig(model=args.model, steps=args.steps, prompts_per_step=args.prompts_per_step,
                         group_size=args.group_size, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         learning_rate=args.learning_rate, seed=args.seed, zero_variance=zero_variance,
                         eval_size=max(args.eval_size, 1), eval_every=args.steps, threads=args.threads, device="cpu",
                         save_model=False)

    base = config("skip")
    eval_data = load_task(base)[1] if args.eval_size > 0 else None
    print(f"GRPO on {args.model}, addition task: {args.steps} steps x {args.prompts_per_step} prompts x "
          f"{args.group_size} samples, <= {args.max_new_tokens} new tokens, T={args.temperature}, lr={args.learning_rate}, "
          f"seed {args.seed}, {args.threads} torch threads, CPU float32; {os.cpu_count()} cores, {load()}", flush=True)
    try:
        busy = os.getloadavg()[0]
        if busy + args.threads > (os.cpu_count() or 1) + 0.5:
            print(f"warning: load {busy:.1f} + {args.threads} threads > {os.cpu_count()} cores: other processes share the CPU, "
                  f"so both sides' timings are inflated and noisy" + (" (torch threads waiting on each other: try --threads 1)"
                  if args.threads > 1 else ""), flush=True)
    except OSError: pass
    runs = {}
    plan = [("lmtrain (zero_variance=skip)", lambda: run_lmtrain(base, eval_data, evaluate_before=True))]
    if not args.skip_keep: plan.append(("lmtrain (zero_variance=keep)", lambda: run_lmtrain(config("keep"), eval_data, False)))
    if not args.skip_trl:
        out_dir = tempfile.mkdtemp(prefix="bench_trl_grpo_")
        plan.append(("TRL GRPOTrainer", lambda: run_trl(config("keep"), eval_data, out_dir)))
    for name, fn in plan:
        torch.set_num_threads(args.threads)
        print(f"... {name}: starting ({load()})", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        r = runs[name] = fn()
        r["run_s"], r["load_after"] = time.perf_counter() - t0, load()
        print(f"... {name}: done in {r['run_s']:.0f} s; s/step {', '.join(f'{t:.1f}' for t in r['step_s'])} "
              f"({r['load_after']})", file=sys.stderr, flush=True)

    if not args.skip_trl: shutil.rmtree(out_dir, ignore_errors=True)
    acc_before = runs["lmtrain (zero_variance=skip)"].get("accuracy_before")
    print()
    print(f"{'run':<30}{'s/step med':>11}{'s/step mean':>12}{'cpu s/step':>11}{'gen+score':>10}{'train':>8}"
          f"{'reward mean':>17}{'reward last':>12}{'held-out acc':>13}")
    for name, r in runs.items():
        acc = "-" if r["accuracy_after"] is None else f"{r['accuracy_after']:.0%}"
        print(f"{name:<30}{r['median_s']:>11.2f}{r['mean_s']:>12.2f}{r['cpu_median_s']:>11.2f}{r['gen_median_s']:>10.2f}{r['train_median_s']:>8.2f}"
              f"{r['reward_mean']:>10.3f} ±{r['reward_se']:.3f}{r['reward_last']:>12.3f}{acc:>13}")
    print(f"(wall s/step over steps 2..{args.steps}; cpu s/step: median process CPU time per step, less sensitive to other "
          f"processes on the machine; gen+score and train: medians of wall time; reward over all {args.steps} steps, "
          f"± standard error of the completion mean; held-out greedy accuracy on {args.eval_size} problems"
          + (f", {acc_before:.0%} before training)" if acc_before is not None else ")"))
    trl_run = runs.get("TRL GRPOTrainer")
    if trl_run:
        print(f"TRL {trl_run['trl_version']}: torch threads during its steps {trl_run['threads_seen']}, optimizer "
              f"{trl_run['optimizer']}, {trl_run['training_dtype']}, gradient checkpointing {trl_run['gradient_checkpointing']}")
        for name, r in runs.items():
            if name == "TRL GRPOTrainer": continue
            ratio_med, ratio_mean = trl_run["median_s"] / r["median_s"], trl_run["mean_s"] / r["mean_s"]
            ratio_cpu = trl_run["cpu_median_s"] / r["cpu_median_s"]
            diff = r["reward_mean"] - trl_run["reward_mean"]
            print(f"speed-up of {name} over TRL (TRL s/step / lmtrain s/step): {ratio_med:.2f}x median, "
                  f"{ratio_mean:.2f}x mean, {ratio_cpu:.2f}x CPU time (target >= 2x: {'PASS' if ratio_med >= 2 else 'FAIL'}); "
                  f"reward lmtrain - TRL = {diff:+.3f} (± {math.hypot(r['reward_se'], trl_run['reward_se']):.3f})")
    if args.json: print(json.dumps(runs, default=str))


if __name__ == "__main__":
    main()
