"""The three prompt optimizers of lesson 08 on the embedded SmolLM2, over seeds: strict and format-free accuracy.

What it measures. One program, `Input(MathQuestion) -> Generator(NumericalAnswerWithThinking)` (lesson 08's), whose
model is the embedded SmolLM2-135M-Instruct, trained on synthetic `+`/`-` arithmetic by each prompt optimizer:

    no_training             the program as built: no demonstrations, default instructions
    random_few_shot         RandomFewShot(k=3): gold demonstrations drawn at random, the best set by validation kept
    bootstrap_few_shot      BootstrapFewShot(k=3): the program's own right outputs as demonstrations
    instruction_optimizer   InstructionOptimizer: SmolLM2 itself proposes instructions from the failures (with its own
                            reply cap, --proposer-max-tokens: a proposal cut off is rejected whole)
    random_then_bootstrap   RandomFewShot for the first half of the epochs, then BootstrapFewShot from the program it
                            left (the warm start lesson 08 recommends when the untrained program is never right);
                            the random state is a candidate of the second phase, so the better of the two is kept

The questions are bare ("What is 9 - 22?"): the program's output data model asks for the format (JSON), and a
question that also asked for `#### N` would give the model two formats at once. Every arm sees the same training,
validation and held-out problems (data seeds fixed), for the same epochs and
batches; `--seeds` vary the optimizers' draws and the data order. Held-out accuracy is measured greedily through the
trained program, two ways: **strict**, the program's reward (`ExactMatch` on the parsed answer field: the reply must
be read as the output data model and hold the right number) and **format-free**, the last number of the raw reply
(`LastNumberCorrect`, the main job's format-free metric), which says whether the arithmetic was right whatever the
format. The untrained program is greedy and has no seed, so it is evaluated once.

    python scripts/compare_optimizers.py --seeds 0 1 2 --out nbs/data/bench/optimizers_smollm2.json
    python scripts/compare_optimizers.py ... --arms random_then_bootstrap --resume   # add an arm to the JSON
    python scripts/compare_optimizers.py --smoke       # a tiny random model, the whole pipeline, in seconds

The JSON (written after every run) holds the settings, one record per run and, per arm, the mean and sample std over
seeds; lesson 08 reads it. `--resume` refuses a file written with other settings.
"""
from __future__ import annotations

import argparse, asyncio, json, statistics, time
from collections import Counter
from pathlib import Path

import torch

from lmtrain.data_models import MathQuestion, NumericalAnswerWithThinking
from lmtrain.datasets import synthetic
from lmtrain.files import atomic_write
from lmtrain.generators import Generator
from lmtrain.language_models import LanguageModel
from lmtrain.optimizers import BootstrapFewShot, InstructionOptimizer, RandomFewShot
from lmtrain.programs import Input, Program
from lmtrain.rewards import ExactMatch
from lmtrain.rewards.answers import LastNumberCorrect

ARMS = ("no_training", "random_few_shot", "bootstrap_few_shot", "instruction_optimizer", "random_then_bootstrap")


async def arithmetic_program(language_model) -> Program:
    "Lesson 08's program: a question in, a worked answer out."
    inputs = Input(data_model=MathQuestion)
    outputs = await Generator(data_model=NumericalAnswerWithThinking, language_model=language_model)(inputs)
    return Program(inputs=inputs, outputs=outputs, name="arithmetic")


def disjoint_splits(sizes: dict, ops, answer_format) -> dict:
    "Training, validation and held-out problems from one seeded stream, no question in two splits (nor twice in one)."
    # load_data's first split is the first distinct questions of the stream: here training, then validation
    (x_test, y_test), (x, y) = synthetic.load_data("arithmetic", n_train=sizes["test"], n_test=sizes["train"] + sizes["val"],
                                                   seed=11, ops=ops, answer_format=answer_format)
    n = sizes["train"]
    return {"train": (x[:n], y[:n]), "val": (x[n:], y[n:]), "test": (x_test, y_test)}


def make_optimizer(arm: str, seed: int, proposer):
    if arm == "random_few_shot": return RandomFewShot(k=3, seed=seed)
    if arm == "bootstrap_few_shot": return BootstrapFewShot(k=3, seed=seed)
    if arm == "instruction_optimizer": return InstructionOptimizer(proposer, seed=seed)
    if arm == "random_then_bootstrap": return RandomFewShot(k=3, seed=seed)   # its first phase; the second is below
    return None


def format_free(result) -> bool:
    "Whether the last number of the raw reply is the label's answer (the main job's format-free metric; no reply: wrong)."
    text = result.calls[-1].text if result.calls else None
    return isinstance(text, str) and LastNumberCorrect().compute(result.y_true, text) == 1.0


def held_out_scores(program) -> dict:
    "Strict and format-free accuracy of the program's last evaluation, and how its replies ended."
    results = program.last_results
    return {"strict": statistics.fmean(r.reward >= 1.0 for r in results),
            "format_free": statistics.fmean(format_free(r) for r in results),
            "outcomes": dict(Counter(r.outcome for r in results)), "n": len(results),
            "replies": [{"question": r.x.question, "gold": r.y_true.answer, "reply": r.calls[-1].text if r.calls else None,
                         "reward": r.reward} for r in results[:3]]}


def prompt_state(program) -> dict:
    "What the optimizer left in the prompt: the demonstrations' sources and the instructions."
    g = program.trainable_generators[0]
    return {"examples": len(g.examples), "example_sources": dict(Counter(e.source for e in g.examples)),
            "instructions": g.instructions}


async def one_run(arm: str, seed: int, model, proposer, data: dict, epochs: int, batch_size: int) -> dict:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    program = await arithmetic_program(model)
    optimizer = make_optimizer(arm, seed, proposer)
    program.compile(reward=ExactMatch(in_mask=["answer"]), optimizer=optimizer, seed=seed)   # no_training: evaluate only
    val_reward, phases = [], [(optimizer, epochs)]
    if arm == "random_then_bootstrap":   # half the epochs each (the first phase gets the odd one)
        first = (epochs + 1) // 2
        phases = [(optimizer, first), (BootstrapFewShot(k=3, seed=seed, validate_initial_state=True), epochs - first)]
    for phase, phase_epochs in phases if optimizer is not None else []:
        if phase_epochs < 1: continue
        program.compile(reward=ExactMatch(in_mask=["answer"]), optimizer=phase, seed=seed)
        history = await program.fit(*data["train"], validation_data=data["val"], epochs=phase_epochs, batch_size=batch_size, verbose=0)
        val_reward += [round(v, 4) for v in history.history.get("val_reward", [])]
    optimizer = phases[-1][0]
    await program.evaluate(*data["test"], batch_size=batch_size)
    extra = {}
    if isinstance(optimizer, BootstrapFewShot):
        extra["bootstrapped"] = sum(len(pool) for pool in optimizer.pool.values())
    if isinstance(optimizer, InstructionOptimizer):
        extra["proposals"] = len(optimizer.proposals)
        extra["accepted"] = sum(bool(p.get("accepted")) for p in optimizer.proposals)
        extra["proposal_errors"] = dict(Counter(str(p.get("error"))[:120] for p in optimizer.proposals if p.get("error")))
        extra["instructions_proposed"] = [p["new"] for p in optimizer.proposals if p.get("new")][:4]
        extra["rejected_replies"] = [p["reply"][:400] for p in optimizer.proposals if p.get("reply")][:2]
    return {"arm": arm, "seed": seed, **held_out_scores(program), "val_reward_by_epoch": val_reward,
            **prompt_state(program), **extra, "wall_seconds": time.perf_counter() - start_wall,
            "cpu_seconds": time.process_time() - start_cpu}


def summarize(runs: list[dict]) -> dict:
    "Per arm: each seed's strict and format-free accuracy, their mean and sample std."
    out = {}
    for arm in ARMS:
        rs = [r for r in runs if r["arm"] == arm]
        if not rs: continue
        s = {"seeds": [r["seed"] for r in rs]}
        for key in ("strict", "format_free"):
            values = [r[key] for r in rs]
            s[key], s[f"{key}_mean"] = values, statistics.fmean(values)
            s[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        s["wall_seconds_mean"] = statistics.fmean(r["wall_seconds"] for r in rs)
        out[arm] = s
    return out


async def main(args):
    torch.set_num_threads(args.threads)
    if args.smoke:
        from lmtrain.testing import tiny_model   # a tiny random model: checks the pipeline, not the methods
        model = LanguageModel.from_transformers(*tiny_model(seed=0), name="local/tiny-smoke", max_tokens=16)
        proposer = model
        sizes = dict(train=8, val=4, test=8)
    else:
        model = LanguageModel(model="local/smollm2-135m-instruct", max_tokens=args.max_tokens, timeout=None, cache=False)
        # the same weights, with room to write instructions: a proposal cut at the answers' 64 tokens is rejected whole
        proposer = LanguageModel(model="local/smollm2-135m-instruct", max_tokens=args.proposer_max_tokens, timeout=None, cache=False)
        sizes = dict(train=args.n_train, val=args.n_val, test=args.n_test)
    ops, fmt = ("+", "-"), None if args.answer_format == "none" else args.answer_format
    data = disjoint_splits(sizes, ops, fmt)
    record = {"model": "tiny random model (smoke)" if args.smoke else "SmolLM2-135M-Instruct (embedded)", "ops": list(ops),
              "answer_format": args.answer_format,
              "n_train": sizes["train"], "n_val": sizes["val"], "n_test": sizes["test"], "epochs": args.epochs,
              "batch_size": args.batch_size, "max_tokens": args.max_tokens, "proposer_max_tokens": args.proposer_max_tokens,
              "threads": args.threads, "runs": []}
    out = Path(args.out) if args.out else None
    if args.resume and out and out.exists():
        before = json.loads(out.read_text())
        changed = [k for k in record if k not in ("runs", "summary") and before.get(k) != record[k]]
        if changed: raise SystemExit(f"--resume: {out} was run with other settings ({', '.join(changed)}); start a new file")
        record["runs"] = before["runs"]
    done = {(r["arm"], r["seed"]) for r in record["runs"]} | {("no_training", s) for r in record["runs"] if r["arm"] == "no_training"
                                                               for s in args.seeds}   # it has no seed: once is all
    arms = args.arms or ARMS
    plan = [("no_training", args.seeds[0])] * ("no_training" in arms) + [(arm, s) for s in args.seeds for arm in arms if arm != "no_training"]
    for arm, seed in plan:
        if (arm, seed) in done: continue
        run = await one_run(arm, seed, model, proposer, data, args.epochs, args.batch_size)
        record["runs"].append(run)
        print(f"{arm:>22} seed {seed}: strict {run['strict']:.1%}, format-free {run['format_free']:.1%}, "
              f"outcomes {run['outcomes']}, val {run['val_reward_by_epoch']}, {run['wall_seconds']:.0f} s", flush=True)
        record["summary"] = summarize(record["runs"])
        if out: atomic_write(out, json.dumps(record, indent=1))
    return record


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-train", type=int, default=24)
    p.add_argument("--n-val", type=int, default=16)
    p.add_argument("--n-test", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--answer-format", default="none", help="how each question asks for its answer (synthetic.ANSWER_FORMATS); "
                   "'none': bare questions, the program's output data model (JSON) is the format")
    p.add_argument("--proposer-max-tokens", type=int, default=320, help="the instruction proposer's reply cap (max_chars 1200 is about 300 tokens)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--arms", nargs="+", choices=ARMS, help="the arms to run (default: all)")
    p.add_argument("--resume", action="store_true", help="keep the runs the --out JSON already holds and run the others")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
