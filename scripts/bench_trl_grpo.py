"""GRPO speed, memory and FLOP utilisation: lmtrain against TRL's `GRPOTrainer`, each in its own process, same machine.

What it measures. Training runs of the embedded SmolLM2-135M-Instruct on lmtrain's addition task (the prompts of
`lmtrain train`: "What is a + b? End your reply with '#### ' followed by the number.", chat template applied), each
arm in a **fresh process** started by this script, one after the other, so that one arm's peak memory cannot hide
another's and no arm inherits another's caches:

  lmtrain          `lmtrain train`'s trainer with the library's defaults: bf16 compute where the CPU has bf16 units
                   (`--dtype auto`), float32 master weights and AdamW state, zero-variance groups skipped (the job
                   itself now resamples them, lesson 16c: more groups a step, at about 2.6x the time a step)
  lmtrain-fp32     the same in float32 (the like-for-like partner of trl-like)
  lmtrain-lora     lmtrain with LoRA adapters (r=16 on every linear layer, lr 2e-4) and one group per forward and backward
                   pass (--micro-batch-size 6): not like-for-like, the memory floor
                   of a run whose optimiser state is only the adapters'
  trl-like         TRL's GRPOTrainer configured like lmtrain: float32, no gradient checkpointing
  trl-default      TRL in its defaults: gradient checkpointing on (on this CPU faster and leaner than off)
  trl-bf16         TRL's fastest CPU setting found: bf16=True, gradient checkpointing on

For each: seconds per step (median, first step left out as warm-up), its split into generation and training,
rollout tokens per second, training FLOP/s and utilisation (MFU) against the matmul roofline measured in the same
run for the dtype the arm computes in, the process's peak resident memory (`ru_maxrss` of that child alone), the
mean training reward, and the held-out greedy accuracy after training. A sampling arm compares rollout tokens per
second with Hugging Face `generate` on the same prompts repeated per sample (TRL's way), in both dtypes.

    pip install -e ".[bench]"                         # TRL into the environment (not installed by make)
    python scripts/bench_trl_grpo.py --steps 8        # every arm; ~25 min on 2 idle cores
    python scripts/bench_trl_grpo.py --arms lmtrain trl-default --steps 5 --json out.json

Configuration shared by every arm: the same model weights (`lmtrain.local.load_causal_lm`), the same prompts in the
same order (TRL's dataset is laid out in lmtrain's batch order, `shuffle_dataset=False`), group size, prompts per
step, completion length, temperature (top-p 1, no top-k), learning rate (constant), AdamW (torch), clipping 0.2/0.28,
gradient clipping 1.0, one optimiser step per batch, no KL, per-sequence loss, and the same reward
(`format_then_correct`, handed to TRL through `lmtrain.rewards.to_trl`). What differs is each trainer's own design:
lmtrain prefills each prompt once and shares its KV cache across the group, drops finished rows while decoding, runs
each prompt once in the training pass, skips the backward of zero-variance groups, and computes in bf16 where it is
faster; TRL repeats every prompt per sample in `generate` and in the loss. The random streams differ (TRL samples with
the global RNG inside `generate`), so the completions, and so the rewards, differ sample by sample.

FLOPs: a forward pass costs 2 per weight and token position plus causal attention (lmtrain.trainer.forward_flops); a
training pass 3x that, over the positions each trainer actually runs (lmtrain logs its own; TRL runs every row's
prompt and completion). MFU is the training FLOPs over the training seconds over the measured roofline.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time, warnings
from pathlib import Path

ARMS = ("lmtrain", "lmtrain-fp32", "lmtrain-lora", "trl-like", "trl-default", "trl-bf16", "sampling")


def load() -> str:
    try: return "load %.2f %.2f %.2f" % os.getloadavg()
    except OSError: return "load ?"


def task_and_reward(args):
    from lmtrain import rewards
    from lmtrain.tasks import TaskConfig, load_task
    task = load_task(TaskConfig(train_size=600, eval_size=max(args.eval_size, 1)), seed=args.seed)
    return task, rewards.get("format_then_correct"), rewards.get("correct")


def median_after_first(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs[1:] if len(xs) > 1 else xs) if xs else None


def run_lmtrain(args, dtype: str, lora: bool = False) -> dict:
    "lmtrain's Trainer as `lmtrain train` builds it (no checkpoints), bf16 compute or float32."
    import torch
    from lmtrain.local import load_causal_lm, resolve_compute_dtype
    from lmtrain.policy import Policy
    from lmtrain.trainer import LoraConfig, Trainer, TrainConfig, apply_lora, evaluate_policy, matmul_roofline
    task, reward, metric = task_and_reward(args)
    model, tokenizer = load_causal_lm(args.model, device="cpu")
    if lora: model = apply_lora(model, LoraConfig(enabled=True))
    compute = resolve_compute_dtype(dtype, torch.device("cpu"))
    roof = matmul_roofline(compute)
    config = TrainConfig(steps=args.steps, prompts_per_step=args.prompts_per_step, group_size=args.group_size,
                         max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                         learning_rate=2e-4 if lora else args.learning_rate, lora=LoraConfig(enabled=lora),
                         micro_batch_size=args.group_size if lora else None,   # the lean arm: one group per pass
                         seed=args.seed, eval_every=args.steps, checkpoint_every=0)
    policy = Policy(model, tokenizer, compute_dtype=compute)
    trainer = Trainer(policy, reward, task.train, config, prompt=task.prompt, peak_flops=roof)
    starts, times = [], []
    from lmtrain.callbacks import LambdaCallback
    timer = LambdaCallback(on_batch_begin=lambda b, logs=None: starts.append(time.perf_counter()),
                           on_batch_end=lambda b, logs=None: times.append(time.perf_counter() - starts[-1]))
    history = trainer.fit(callbacks=[timer], progress=False)
    logs = history.batch_logs
    accuracy = None
    if args.eval_size:
        x, y = task.held_out
        accuracy = evaluate_policy(trainer.sampler, [task.prompt(xi) for xi in x], y, metric, max_new_tokens=args.max_new_tokens)[0]
    return dict(step_s=times, median_s=median_after_first(times),
                gen_median_s=median_after_first([b["time_generate"] for b in logs]),
                train_median_s=median_after_first([b["time_train"] for b in logs]),
                tokens_per_s=median_after_first([b.get("tokens_per_s") for b in logs]),
                train_gflops=median_after_first([b.get("train_gflops") for b in logs]),
                mfu=median_after_first([b.get("mfu") for b in logs]), roofline_gflops=roof / 1e9,
                reward_per_step=[b["reward_mean"] for b in logs], reward_mean=sum(b["reward_mean"] for b in logs) / len(logs),
                accuracy_after=accuracy, compute_dtype=str(compute).removeprefix("torch."))


def run_trl(args, variant: str) -> dict:
    "TRL's GRPOTrainer on the same prompts (in lmtrain's batch order), reward, model and options; `variant` picks its setting."
    import torch
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer
    from lmtrain.local import load_causal_lm
    from lmtrain.policy import Policy
    from lmtrain.rewards import gold_value, to_trl
    from lmtrain.trainer import batch_indices, evaluate_policy, forward_flops, matmul_roofline
    task, reward, metric = task_and_reward(args)
    model, tokenizer = load_causal_lm(args.model, device="cpu")
    bf16 = variant == "trl-bf16"
    roof = matmul_roofline(torch.bfloat16 if bf16 else torch.float32)
    policy = Policy(model, tokenizer)
    x, y = task.train
    order = [i for k in range(args.steps) for i in batch_indices(len(x), k, args.prompts_per_step, args.seed)]
    texts = policy.format_prompts([task.prompt(x[i]) for i in order])
    if policy.encode_prompts(texts[:1])[0][0].tolist() != tokenizer(text=texts[:1])["input_ids"][0]:
        raise RuntimeError("TRL would tokenize the rendered prompt differently from lmtrain")
    dataset = Dataset.from_dict({"prompt": texts, "answer": [gold_value(y[i]) for i in order]})
    reward_fn, seen = to_trl(reward), []
    def reward_func(prompts=None, completions=None, **columns):
        values = reward_fn(prompts, completions, **columns); seen.append(values); return values
    reward_func.__name__ = reward_fn.__name__
    group = args.group_size
    tr_args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench_trl_"), report_to="none", save_strategy="no", eval_strategy="no",
        logging_steps=1, disable_tqdm=True, use_cpu=True, bf16=bf16, fp16=False, seed=args.seed, data_seed=args.seed,
        max_steps=args.steps, shuffle_dataset=False, dataloader_pin_memory=False,
        per_device_train_batch_size=args.prompts_per_step * group, gradient_accumulation_steps=1, steps_per_generation=1,
        num_generations=group, max_completion_length=args.max_new_tokens, temperature=args.temperature, top_p=1.0,
        top_k=0, use_vllm=False, learning_rate=args.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", beta=0.0, num_iterations=1, epsilon=0.2,
        epsilon_high=0.28, scale_rewards="group", loss_type="grpo", mask_truncated_completions=False,
        **({"gradient_checkpointing": False} if variant == "trl-like" else {}))

    class StepTimer(TrainerCallback):
        def __init__(self): self.starts, self.times, self.logs = [], [], []
        def on_train_begin(self, args, state, control, model=None, **kw):
            self.setup = dict(training_dtype=str(next(model.parameters()).dtype),
                              gradient_checkpointing=bool(getattr(model, "is_gradient_checkpointing", False)))
        def on_step_begin(self, args, state, control, **kw): self.starts.append(time.perf_counter())
        def on_step_end(self, args, state, control, **kw): self.times.append(time.perf_counter() - self.starts[-1])
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "reward" in logs: self.logs.append(dict(logs))

    timer = StepTimer()
    trainer = GRPOTrainer(model=model, reward_funcs=reward_func, args=tr_args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    generation, positions, generated = [], [], []
    generate = trainer._generate_and_score_completions
    def timed_generate(*a, **kw):    # sampling + scoring, to split the step as lmtrain does; and the positions trained
        t0 = time.perf_counter()
        out = generate(*a, **kw)
        generation.append(time.perf_counter() - t0)
        prompt, completion = out["prompt_mask"].sum().item(), out["completion_mask"].sum().item()
        positions.append(prompt + completion); generated.append(completion)
        return out
    trainer._generate_and_score_completions = timed_generate
    trainer.train()
    train_s = [t - g for t, g in zip(timer.times, generation)]
    flops = [3 * forward_flops(model, p, c / (args.prompts_per_step * group) / 2) / t
             for p, c, t in zip(positions, generated, train_s)]
    accuracy = None
    if args.eval_size:
        hx, hy = task.held_out
        accuracy = evaluate_policy(Policy(trainer.model, tokenizer), [task.prompt(xi) for xi in hx], hy, metric,
                                   max_new_tokens=args.max_new_tokens)[0]
    rewards = [v for batch in seen for v in batch]
    return dict(step_s=timer.times, median_s=median_after_first(timer.times), gen_median_s=median_after_first(generation),
                train_median_s=median_after_first(train_s),
                tokens_per_s=median_after_first([g / t for g, t in zip(generated, generation)]),
                train_gflops=median_after_first([f / 1e9 for f in flops]), mfu=median_after_first([f / roof for f in flops]),
                roofline_gflops=roof / 1e9, reward_per_step=[l["reward"] for l in timer.logs],
                reward_mean=sum(rewards) / len(rewards), accuracy_after=accuracy, trl_version=trl.__version__, **timer.setup)


def run_sampling(args) -> dict:
    "Rollout tokens per second: lmtrain's shared-prefix decode against HF `generate` with per-sample prompts, in fp32 and bf16."
    import torch
    from lmtrain.local import load_causal_lm
    from lmtrain.policy import Policy
    task, _, _ = task_and_reward(args)
    model, tokenizer = load_causal_lm(args.model, device="cpu")
    prompts = [task.prompt(x) for x in task.train[0][:args.prompts_per_step]]
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        policy = Policy(model, tokenizer, compute_dtype=dtype)
        texts = policy.format_prompts(prompts)
        ids, mask = policy.encode_prompts(texts)
        rep_ids, rep_mask = ids.repeat_interleave(args.group_size, 0), mask.repeat_interleave(args.group_size, 0)
        name = str(dtype).removeprefix("torch.")
        for label, fn in (("lmtrain", lambda s: policy.sample(prompts, n=args.group_size, max_new_tokens=args.max_new_tokens,
                                                              temperature=args.temperature, seed=s)),
                          ("hf_generate", lambda s: _generate(model, rep_ids, rep_mask, policy, args, s, dtype))):
            rates = []
            for seed in range(4):   # the first is a warm-up
                t0 = time.perf_counter(); tokens = fn(seed); t = time.perf_counter() - t0
                tokens = tokens.num_tokens if hasattr(tokens, "num_tokens") else tokens
                rates.append(tokens / t)
            out[f"{label}_{name}_tokens_per_s"] = statistics.median(rates[1:])
    return out


def _generate(model, ids, mask, policy, args, seed, dtype):
    import torch
    from lmtrain.decoding import compute_context, mask_through_first_eos
    torch.manual_seed(seed)
    with torch.inference_mode(), compute_context(model, dtype):
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=args.temperature, top_p=1.0,
                             top_k=0, max_new_tokens=args.max_new_tokens, pad_token_id=policy.pad_id, eos_token_id=policy.eos_ids)
    return int(mask_through_first_eos(out[:, ids.shape[1]:], policy.eos_ids).sum())


def child(args):
    "Run one arm in this process and print its result as JSON on the last line."
    import torch, transformers
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    arm = args.arm
    result = (run_sampling(args) if arm == "sampling" else run_lmtrain(args, "fp32" if arm == "lmtrain-fp32" else "auto", lora=arm == "lmtrain-lora")
              if arm.startswith("lmtrain") else run_trl(args, arm))
    print(json.dumps(result, default=str))


def spawn(arm: str, args) -> dict:
    "Run `arm` in a fresh process; its result, wall time and peak resident memory (that process alone)."
    cmd = [sys.executable, __file__, "--arm", arm, "--steps", str(args.steps), "--prompts-per-step", str(args.prompts_per_step),
           "--group-size", str(args.group_size), "--max-new-tokens", str(args.max_new_tokens), "--temperature", str(args.temperature),
           "--learning-rate", str(args.learning_rate), "--seed", str(args.seed), "--threads", str(args.threads),
           "--eval-size", str(args.eval_size), "--model", args.model]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        return {"error": stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {status}", "stderr_tail": stderr[-2000:]}
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(run_s=time.perf_counter() - t0, peak_rss_gib=usage.ru_maxrss / 2**20)   # ru_maxrss is in KiB on Linux
    return result


def report(runs: dict, args):
    ok = {k: v for k, v in runs.items() if "error" not in v and k != "sampling"}
    lora = ok.get("lmtrain-lora")   # not like-for-like: in the table, and beside the memory ratio
    print(f"\n{'arm':<14}{'s/step':>8}{'gen':>7}{'train':>7}{'tok/s':>8}{'GFLOP/s':>9}{'MFU':>6}{'roof':>7}{'peak GiB':>9}"
          f"{'reward':>8}{'held-out':>9}  setting")
    for name, r in ok.items():
        acc = "-" if r.get("accuracy_after") is None else f"{r['accuracy_after']:.0%}"
        setting = r.get("compute_dtype") or f"{r.get('training_dtype')}, bf16={name == 'trl-bf16'}, GC={r.get('gradient_checkpointing')}"
        print(f"{name:<14}{r['median_s']:>8.2f}{r['gen_median_s']:>7.2f}{r['train_median_s']:>7.2f}{r['tokens_per_s']:>8.1f}"
              f"{r['train_gflops']:>9.1f}{r['mfu']:>6.0%}{r['roofline_gflops']:>7.0f}{r['peak_rss_gib']:>9.2f}"
              f"{r['reward_mean']:>8.3f}{acc:>9}  {setting}")
    for name, r in runs.items():
        if "error" in r: print(f"{name}: failed: {r['error']}")
    ours = ok.get("lmtrain")
    trl_arms = {k: v for k, v in ok.items() if k.startswith("trl")}
    if ours and trl_arms:
        print("\nratios (measured in this run):")
        if "trl-like" in trl_arms:
            r = trl_arms["trl-like"]["median_s"] / ours["median_s"]
            print(f"  s/step, TRL like-for-like / lmtrain: {r:.2f}x  (target >= 3: {'PASS' if r >= 3 else 'FAIL'})")
        fastest = min(trl_arms.items(), key=lambda kv: kv[1]["median_s"])
        r = fastest[1]["median_s"] / ours["median_s"]
        print(f"  s/step, TRL's fastest ({fastest[0]}) / lmtrain: {r:.2f}x  (target >= 2: {'PASS' if r >= 2 else 'FAIL'})")
        leanest = min(trl_arms.items(), key=lambda kv: kv[1]["peak_rss_gib"])
        m = ours["peak_rss_gib"] / leanest[1]["peak_rss_gib"]
        print(f"  peak memory, lmtrain / TRL's leanest ({leanest[0]}): {m:.2f}  (target <= 0.5: {'PASS' if m <= 0.5 else 'FAIL'})")
        best_trl_reward = max(v["reward_mean"] for v in trl_arms.values())
        print(f"  reward, lmtrain - best TRL arm: {ours['reward_mean'] - best_trl_reward:+.3f} (equal or better wanted)")
        print(f"  training FLOP utilisation, lmtrain: {ours['mfu']:.0%} of the {ours['roofline_gflops']:.0f} GFLOP/s "
              f"{ours['compute_dtype']} roofline  (target >= 50%: {'PASS' if ours['mfu'] >= 0.5 else 'FAIL'})")
        floor = (4 * 4 * 134.5e6) / 2**30   # fp32 weights, gradients and AdamW's two moments of SmolLM2's 134.5M weights
        print(f"  (full fine-tuning's fp32 weights, gradients and AdamW state alone are {floor:.2f} GiB = "
              f"{floor / leanest[1]['peak_rss_gib']:.2f} of TRL's leanest peak, before torch itself or any activation)")
        if lora:
            print(f"  peak memory, lmtrain with LoRA / TRL's leanest: {lora['peak_rss_gib'] / leanest[1]['peak_rss_gib']:.2f} "
                  f"({lora['peak_rss_gib']:.2f} GiB, {lora['median_s']:.2f} s/step, reward {lora['reward_mean']:.3f}; not like-for-like)")
    s = runs.get("sampling")
    if s and "error" not in s:
        for dtype in ("float32", "bfloat16"):
            r = s[f"lmtrain_{dtype}_tokens_per_s"] / s[f"hf_generate_{dtype}_tokens_per_s"]
            print(f"  rollout tokens/s, {dtype}: lmtrain {s[f'lmtrain_{dtype}_tokens_per_s']:.0f} vs HF generate with per-sample "
                  f"prompts {s[f'hf_generate_{dtype}_tokens_per_s']:.0f}: {r:.2f}x  (target >= 2: {'PASS' if r >= 2 else 'FAIL'})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS, help="which arms to run, each in its own process")
    ap.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)   # internal: run one arm in this process
    ap.add_argument("--steps", type=int, default=8, help="training steps per arm (the first is left out of the timing)")
    ap.add_argument("--prompts-per-step", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=6)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--learning-rate", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads in every arm")
    ap.add_argument("--eval-size", type=int, default=50, help="held-out problems for greedy accuracy after training (0: skip)")
    ap.add_argument("--model", default="local/smollm2-135m-instruct")
    ap.add_argument("--json", help="write every arm's numbers to this file")
    args = ap.parse_args()
    if args.arm: return child(args)
    print(f"GRPO on {args.model}, addition: {args.steps} steps x {args.prompts_per_step} prompts x {args.group_size} samples, "
          f"<= {args.max_new_tokens} tokens, T={args.temperature}, lr={args.learning_rate}, seed {args.seed}, {args.threads} "
          f"threads; {os.cpu_count()} cores, {load()}", flush=True)
    runs = {}
    for arm in args.arms:
        print(f"... {arm}: starting ({load()})", file=sys.stderr, flush=True)
        runs[arm] = spawn(arm, args)
        done = runs[arm].get("error") or f"{runs[arm]['run_s']:.0f} s, peak {runs[arm]['peak_rss_gib']:.2f} GiB"
        print(f"... {arm}: {done} ({load()})", file=sys.stderr, flush=True)
        if args.json: Path(args.json).write_text(json.dumps(runs, indent=1, default=str))
    report(runs, args)


if __name__ == "__main__":
    main()
