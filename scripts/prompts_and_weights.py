"""Prompts and weights together, on the embedded SmolLM2: few-shot only, GRPO only, few-shot -> GRPO, GRPO -> few-shot.

What it measures (lesson 15b, issue 15). For each task and seed, a fresh copy of the embedded SmolLM2-135M-Instruct
runs one program, `Input(MathQuestion) -> Generator(HashAnswer)`, whose prompt asks for the main job's format (reasoning,
then a final line `#### N`) and whose demonstrations are written in it. Four arms train it, each through
`lmtrain.optimizers.BetterTogether` with `keep="best"` (the start counts: an arm can never end below its untrained program
on the validation data):

    p        RandomFewShot(k=3): one draw of k gold demonstrations per epoch, the best by validation reward kept
    w        GRPO on the weights, through the program's prompt (groups of 6, 4 prompts per step, zero-variance groups skipped)
    p -> w   the two, in that order: GRPO trains on the few-shot prompt
    w -> p   the other order: demonstrations chosen for the trained model

Same budget: every arm gets `--budget` seconds of process CPU time (`time.process_time()`: every thread of this process,
not the time other processes take). A one-phase arm spends it in its phase, a two-phase arm half in each, stopped by
`lmtrain.program_weights.TimeBudget` (a GRPO phase after the step that crosses its share, a prompt phase after the epoch
that does; an epoch is one candidate). The CPU and wall time each run used, evaluations included, are recorded.

The reward (every arm: the prompt optimizer's selection and GRPO's advantages) is the main job's `format_then_correct`
shape on the program's reading of a reply: 0.25 for the `#### N` format, 0.25 for the right number, 0.5 for both.
Held-out accuracy is measured greedily through the trained program on `--n-test` problems, on the raw replies with the
main job's metrics: strict (`HashAnswerCorrect`: the last `#### N` is right) and format-free (`LastNumberCorrect`: the last
number is right). The split is the same for every run (data seed 0); `--seeds` vary the data order, the few-shot draws
and the sampling.

    python scripts/prompts_and_weights.py --smoke                 # a tiny random model, the whole pipeline, < 1 minute
    python scripts/prompts_and_weights.py --budget 600 --seeds 0 1 2 --out nbs/data/bench/prompts_and_weights.json
    python scripts/prompts_and_weights.py ... --resume            # skip the runs the JSON already holds
    python scripts/prompts_and_weights.py --merge add.json mul.json   # one JSON from per-task invocations

The JSON (written after every run) holds the settings, one record per run and a summary per task and arm (mean and
sample std over seeds); lesson 15b plots it.
"""
from __future__ import annotations

import argparse, asyncio, copy, gc, json, re, statistics, time
from pathlib import Path

import torch
from pydantic import Field

from lmtrain.data_models import DataModel, MathQuestion
from lmtrain.parsing import ParseFailure
from lmtrain.datasets import format_number
from lmtrain.datasets.synthetic import load_data
from lmtrain.files import atomic_write
from lmtrain.generators import Generator
from lmtrain.language_models import LanguageModel
from lmtrain.programs import Input, Program
from lmtrain.rewards import Breakdown, Reward
from lmtrain.trainer import free_cpu_threads
import lmtrain.optimizers as optimizers
from lmtrain.optimizers import RandomFewShot

ARMS = ("p", "w", "p -> w", "w -> p")
TASKS = {"addition": dict(low=1, high=30), "multiplication": dict(low=2, high=15)}
_NUMBER = r"-?\d[\d,]*(?:\.\d+)?"


def answer_metrics():
    "The main job's strict and format-free metrics (`lmtrain.rewards.answers` once the rewards package lands, `lmtrain.cli` before)."
    from lmtrain.rewards.answers import HashAnswerCorrect, LastNumberCorrect
    return HashAnswerCorrect(), LastNumberCorrect()


class HashAnswer(DataModel):
    "A worked answer ending with a line '#### N' (the main job's format); `marked` says whether the answer came that way."
    thinking: str = Field("", description="The working, before the final line.")
    answer: float = Field(description="The final answer.")
    marked: bool = Field(True, description="True when the answer came on a '#### N' line; False when it is the reply's last number.")

    @classmethod
    def reply_instructions(cls) -> str:
        return "Work it out step by step, then end your reply with a line '#### ' followed by the final number."

    @classmethod
    def render_reply(cls, output: dict) -> str:
        return f"{output.get('thinking', '')}\n#### {format_number(float(output['answer']))}".strip()

    @classmethod
    def read_reply(cls, text: str):
        marked = re.findall(r"####\s*(" + _NUMBER + ")", text)
        if marked: return cls(thinking=text[:text.rfind("####")].strip(), answer=float(marked[-1].replace(",", "")), marked=True)
        numbers = re.findall(_NUMBER, text)
        if numbers: return cls(thinking=text.strip(), answer=float(numbers[-1].replace(",", "")), marked=False)
        return ParseFailure("HashAnswer", text[:60], "no '#### N' line and no number")


class FormatThenCorrect(Reward):
    "0.25 for the '#### N' format, 0.25 for the right number, 0.5 for both: the main job's shape, on the program's reading."
    name = "format_then_correct"
    def compute(self, y_true, y_pred):
        right, marked = float(abs(y_pred.answer - float(y_true.answer)) < 1e-9), float(y_pred.marked)
        return Breakdown(0.25 * marked + 0.25 * right + 0.5 * marked * right, {"format": marked, "correct": right, "both": marked * right})


def load_base(smoke: bool):
    "The model and tokenizer every run copies: the embedded SmolLM2, or a tiny random model for --smoke."
    if smoke:
        from lmtrain.testing import tiny_model
        return tiny_model(seed=0), "tiny random Llama (--smoke)"
    from lmtrain.local import load_causal_lm
    return load_causal_lm(), "SmolLM2-135M-Instruct (embedded)"


async def run_one(base, task: str, arm: str, seed: int, data, args) -> dict:
    "One arm, one seed: a fresh copy of the model, the program, BetterTogether under the budget, the held-out evaluation."
    (model, tokenizer) = base
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = data
    lm = LanguageModel.from_transformers(copy.deepcopy(model), tokenizer, name=f"local/{task}-{arm.replace(' ', '')}-{seed}",
                                         max_tokens=args.eval_tokens)
    q = Input(data_model=MathQuestion)
    program = Program(inputs=q, outputs=await Generator(data_model=HashAnswer, language_model=lm, instructions="Solve the arithmetic problem.")(q),
                      name=f"{task}_solver")
    phases = [p.strip() for p in arm.split("->")]
    share = args.budget / len(phases)
    keep_rollouts = (task, arm, seed) == (args.tasks[0], "p -> w", args.seeds[0]) and "p -> w" in args.arms
    rollouts_path = Path(args.rollouts).with_suffix(".all.jsonl") if keep_rollouts else None
    if rollouts_path is not None and rollouts_path.exists(): rollouts_path.unlink()
    grpo = optimizers.GRPO(group_size=args.group_size, prompts_per_step=args.prompts_per_step, max_new_tokens=args.max_new_tokens,
                           temperature=args.temperature, learning_rate=args.learning_rate, steps=10 ** 6, eval_every=10 ** 6,
                           rollouts_path=rollouts_path)
    together = optimizers.BetterTogether(RandomFewShot(k=args.k), grpo, strategy=arm, keep="best",
                                         prompt_epochs=10 ** 6, prompt_batch_size=len(x_train),
                                         phase_callbacks=[optimizers.TimeBudget(share)])
    program.compile(reward=FormatThenCorrect(), optimizer=together, seed=seed)
    wall, cpu = time.perf_counter(), time.process_time()
    history = await program.fit(x=x_train, y=y_train, validation_data=(x_val, y_val), verbose=0, seed=seed)
    train_cpu = time.process_time() - cpu
    logs, results = await program.evaluate(x=x_test, y=y_test, batch_size=32, return_results=True)
    strict_metric, free_metric = answer_metrics()
    replies = [r.calls[-1].text if r.calls and r.calls[-1].text is not None else "" for r in results]
    strict = sum(strict_metric(y, t) for y, t in zip(y_test, replies)) / len(replies)
    free = sum(free_metric(y, t) for y, t in zip(y_test, replies)) / len(replies)
    weight_steps = [b for b in history.batch_logs if b.get("phase") == "w"]
    if rollouts_path is not None and rollouts_path.exists():   # the combined run's first and last GRPO steps, for the lesson's viewer
        from lmtrain.rollouts import load_rollouts, save_rollouts
        logged = load_rollouts(rollouts_path)
        steps = sorted({r.step for r in logged})
        save_rollouts(args.rollouts, [r for r in logged if r.step in steps[:3] + steps[-3:]])
        rollouts_path.unlink()
    return {"task": task, "arm": arm, "seed": seed, "strict": strict, "format_free": free, "reward": logs["reward"],
            "cpu_seconds": time.process_time() - cpu, "train_cpu_seconds": train_cpu, "wall_seconds": time.perf_counter() - wall,
            "phases": history.history["phase"], "val_reward_by_phase": history.history["val_reward"],
            "cpu_seconds_by_phase": history.history["cpu_seconds"], "best_phase": history.history["phase"][together.best_index],
            "grpo_steps": len(weight_steps), "prompt_epochs": sum(len(h.epoch) for h, k in zip(together.phase_histories, phases) if k == "p"),
            "examples": len(program.generators[0].examples),
            "zero_var_frac_mean": statistics.fmean(b["zero_var_frac"] for b in weight_steps) if weight_steps else None,
            "seconds_per_grpo_step": statistics.median(b["time_generate"] + b["time_train"] for b in weight_steps) if weight_steps else None,
            "replies": replies[:5]}


def summarize(runs: list[dict]) -> dict:
    "Per task and arm: each metric per seed, its mean and sample std, and the mean CPU and wall seconds."
    out = {}
    for r in runs: out.setdefault(r["task"], {}).setdefault(r["arm"], []).append(r)
    spread = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
    for task, arms in out.items():
        for arm, rs in arms.items():
            rs = sorted(rs, key=lambda r: r["seed"])
            s = {"seeds": [r["seed"] for r in rs]}
            for key in ("strict", "format_free", "reward"):
                values = [r[key] for r in rs]
                s.update({key: values, f"{key}_mean": statistics.fmean(values), f"{key}_std": spread(values)})
            s["cpu_seconds_mean"] = statistics.fmean(r["cpu_seconds"] for r in rs)
            s["wall_seconds_mean"] = statistics.fmean(r["wall_seconds"] for r in rs)
            arms[arm] = s
    return out


def merge(paths: list[str]) -> dict:
    "One results JSON from several invocations (e.g. one task each, with its own budget): runs concatenated, the budget and settings per task."
    parts = [json.loads(Path(p).read_text()) for p in paths]
    out = {k: v for k, v in parts[0].items() if k not in ("runs", "summary", "settings", "budget_cpu_seconds")}
    out["budget_cpu_seconds"] = {t: d["budget_cpu_seconds"] for d in parts for t in d["settings"]["tasks"]}
    out["settings"] = {t: d["settings"] for d in parts for t in d["settings"]["tasks"]}
    out["runs"] = [r for d in parts for r in d["runs"]]
    out["summary"] = summarize(out["runs"])
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="a tiny random model and tiny sizes: the whole pipeline in under a minute")
    p.add_argument("--budget", type=float, default=None, help="CPU seconds per arm (default 600; --smoke: 1.5)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds per arm and task (default 0 1 2; --smoke: 0)")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--arms", nargs="+", default=list(ARMS), help="strategies, e.g. 'p' 'w' 'p -> w' 'w -> p'")
    p.add_argument("--n-train", type=int, default=None, help="training problems (default 48; one few-shot candidate per pass over them)")
    p.add_argument("--n-val", type=int, default=None, help="validation problems (selection; default 24)")
    p.add_argument("--n-test", type=int, default=None, help="held-out problems (default 100)")
    p.add_argument("--k", type=int, default=3, help="few-shot demonstrations")
    p.add_argument("--group-size", type=int, default=6)
    p.add_argument("--prompts-per-step", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=None, help="GRPO completion length (default 48)")
    p.add_argument("--eval-tokens", type=int, default=None, help="greedy reply length of the program (default 64)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--learning-rate", type=float, default=None, help="AdamW learning rate (default 1e-5; --smoke: 1e-2)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the cores not already busy)")
    p.add_argument("--out", default=None, help="results JSON (default nbs/data/bench/prompts_and_weights.json; --smoke: runs/prompts_and_weights_smoke.json)")
    p.add_argument("--rollouts", default=None, help="JSONL of the first and last 3 GRPO steps of the first task's 'p -> w' run, first seed "
                   "(default nbs/data/bench/prompts_and_weights_rollouts.jsonl; --smoke: runs/...)")
    p.add_argument("--resume", action="store_true", help="keep the runs already in --out and skip them")
    p.add_argument("--merge", nargs="+", default=None, help="no runs: merge these results JSONs (one per invocation) into --out")
    args = p.parse_args(argv)
    smoke = args.smoke
    defaults = dict(budget=1.5 if smoke else 600.0, seeds=[0] if smoke else [0, 1, 2], n_train=6 if smoke else 48,
                    n_val=4 if smoke else 24, n_test=6 if smoke else 100, max_new_tokens=8 if smoke else 48,
                    eval_tokens=8 if smoke else 64, learning_rate=1e-2 if smoke else 1e-5,
                    out="runs/prompts_and_weights_smoke.json" if smoke else "nbs/data/bench/prompts_and_weights.json",
                    rollouts="runs/prompts_and_weights_smoke_rollouts.jsonl" if smoke else "nbs/data/bench/prompts_and_weights_rollouts.jsonl")
    for k, v in defaults.items():
        if getattr(args, k) is None: setattr(args, k, v)
    for arm in args.arms: optimizers.BetterTogether(RandomFewShot(), optimizers.GRPO(), strategy=arm)   # a bad strategy fails now
    return args


async def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.merge:
        record = merge(args.merge)
        atomic_write(Path(args.out), json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.out} ({len(record['runs'])} runs from {len(args.merge)} files)")
        return record
    torch.set_num_threads(args.threads or free_cpu_threads())
    out = Path(args.out)
    record = json.loads(out.read_text()) if args.resume and out.exists() else {"runs": []}
    done = {(r["task"], r["arm"], r["seed"]) for r in record["runs"]}
    started = time.perf_counter()
    base, model_name = load_base(args.smoke)
    record.update({"model": model_name, "budget_cpu_seconds": args.budget, "n_train": args.n_train, "n_val": args.n_val,
                   "n_test": args.n_test, "threads": torch.get_num_threads(), "smoke": args.smoke,
                   "settings": {k: v for k, v in vars(args).items() if k not in ("resume", "out", "rollouts")}})
    for task in args.tasks:
        (xt, yt), (xe, ye) = load_data(task, n_train=args.n_train + args.n_val, n_test=args.n_test, seed=0, answer_format=None, **TASKS[task])
        data = ((xt[:args.n_train], yt[:args.n_train]), (xt[args.n_train:], yt[args.n_train:]), (xe, ye))
        for seed in args.seeds:
            for arm in args.arms:
                if (task, arm, seed) in done: continue
                run = await run_one(base, task, arm, seed, data, args)
                record["runs"].append(run)
                record["summary"] = summarize(record["runs"])
                atomic_write(out, json.dumps(record, indent=1) + "\n")
                print(f"{task:>14} {arm:>7} seed {seed}: strict {run['strict']:.1%}  format-free {run['format_free']:.1%}  "
                      f"best phase {run['best_phase']}  val by phase {[round(v, 3) for v in run['val_reward_by_phase']]}  "
                      f"grpo steps {run['grpo_steps']}  prompt epochs {run['prompt_epochs']}  "
                      f"cpu {run['cpu_seconds']:.0f} s  wall {run['wall_seconds']:.0f} s", flush=True)
                gc.collect()
    record["total_wall_seconds_this_invocation"] = time.perf_counter() - started
    record["summary"] = summarize(record["runs"])
    atomic_write(out, json.dumps(record, indent=1) + "\n")
    print(f"wrote {out} ({len(record['runs'])} runs, {record['total_wall_seconds_this_invocation']:.0f} s)")
    return record


if __name__ == "__main__":
    asyncio.run(main())
