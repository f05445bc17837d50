"""Run `lmtrain train` configurations over seeds, one after the other, and collect what the lessons plot.

Each experiment is a name and the flags that set it apart from the main job's defaults as they were when the runs
were made (`AS_RUN`: zero-variance groups skipped); `{seed}` in a flag is replaced by the run's seed, for files made
per seed. Each (experiment, seed) runs once, in its own process, into `RUNS/<experiment>/s<seed>` (a run with a
`summary.json` is done and skipped, so the queue can be stopped and started again). `collect` writes one small JSON
per experiment group with, per run, the summary's numbers, the per-step curves (reward, completion length, clip
ratio, KL, entropy, ...) and the job's reading of its own rollouts (`diagnosis`, `warnings`; lesson 18), which the
lessons read from `nbs/data/evidence/`.

    python scripts/experiments.py run ablation --seeds 0 1 2            # every experiment of the group
    python scripts/experiments.py run ablation --only lr3e-5 --seeds 0  # one of them
    python scripts/experiments.py collect ablation                      # -> nbs/data/evidence/ablation.json
    python scripts/experiments.py errors ablation --only fewshot2_prompts8_steps40   # -> ablation_errors.json: what it got wrong
"""
import argparse, json, os, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = Path(os.environ.get("LMTRAIN_EXPERIMENTS", ROOT / "runs" / "experiments"))
EVIDENCE = ROOT / "nbs" / "data" / "evidence"

# The ablation started from the first round's defaults (zero-shot prompts, 4 prompts a step, 20 steps) and changed one
# thing at a time; its winner, two worked examples with 8 prompts a step for 40 steps, became the default, and
# resampling zero-variance groups (lesson 16c) was added to it last.
ZERO_SHOT = ["--few-shot", "0", "--prompts-per-step", "4", "--steps", "20"]
# Every stored run was made while `lmtrain train` skipped zero-variance groups, so each run starts from that setting
# (before the experiment's flags, which win): a rerun reproduces the stored evidence, and an experiment that resamples
# says so in its flags. Not in the recorded flags; each record's `config` holds what ran.
AS_RUN = ["--zero-variance", "skip"]

GROUPS = {
    # the first round's main job, and one change at a time (issue 12: defaults chosen by evidence); later flags win
    "ablation": {
        "base": [*ZERO_SHOT],
        "steps40": [*ZERO_SHOT, "--steps", "40"],
        "lr2e-5": [*ZERO_SHOT, "--learning-rate", "2e-5"],
        "lr4e-5": [*ZERO_SHOT, "--learning-rate", "4e-5"],
        "fewshot2": [*ZERO_SHOT, "--few-shot", "2"],
        "group8": [*ZERO_SHOT, "--group-size", "8"],
        "prompts8": [*ZERO_SHOT, "--prompts-per-step", "8"],
        "temp1.0": [*ZERO_SHOT, "--temperature", "1.0"],
        "tokens48": [*ZERO_SHOT, "--max-new-tokens", "48"],
        "mu2_mb12": [*ZERO_SHOT, "--num-iterations", "2", "--mini-batch-size", "12"],
        "resample": [*ZERO_SHOT, "--zero-variance", "resample"],
        "agg_token": [*ZERO_SHOT, "--loss-aggregation", "token"],
        "agg_constant": [*ZERO_SHOT, "--loss-aggregation", "constant"],
        "reward_correct": [*ZERO_SHOT, "--reward", "correct"],
        "lr2e-5_steps40": [*ZERO_SHOT, "--learning-rate", "2e-5", "--steps", "40"],
        "fewshot1": [*ZERO_SHOT, "--few-shot", "1"],
        "lr3e-5_steps40": [*ZERO_SHOT, "--learning-rate", "3e-5", "--steps", "40"],
        "lr4e-5_steps40": [*ZERO_SHOT, "--learning-rate", "4e-5", "--steps", "40"],
        "lr2e-5_steps60": [*ZERO_SHOT, "--learning-rate", "2e-5", "--steps", "60"],
        "lr3e-5_steps60": [*ZERO_SHOT, "--learning-rate", "3e-5", "--steps", "60"],
        "fewshot1_lr2e-5_steps40": [*ZERO_SHOT, "--few-shot", "1", "--learning-rate", "2e-5", "--steps", "40"],
        "fewshot2_lr2e-5_steps40": [*ZERO_SHOT, "--few-shot", "2", "--learning-rate", "2e-5", "--steps", "40"],
        "fewshot1_lr3e-5_steps40": [*ZERO_SHOT, "--few-shot", "1", "--learning-rate", "3e-5", "--steps", "40"],
        "fewshot2_temp1.0": [*ZERO_SHOT, "--few-shot", "2", "--temperature", "1.0"],
        "fewshot2_steps40": [*ZERO_SHOT, "--few-shot", "2", "--steps", "40"],
        "fewshot2_group8": [*ZERO_SHOT, "--few-shot", "2", "--group-size", "8"],
        "fewshot2_prompts8": [*ZERO_SHOT, "--few-shot", "2", "--prompts-per-step", "8"],
        "fewshot3": [*ZERO_SHOT, "--few-shot", "3"],
        "fewshot2_agg_constant": [*ZERO_SHOT, "--few-shot", "2", "--loss-aggregation", "constant"],
        "fewshot2_agg_token": [*ZERO_SHOT, "--few-shot", "2", "--loss-aggregation", "token"],
        "fewshot2_resample": [*ZERO_SHOT, "--few-shot", "2", "--zero-variance", "resample"],
        "fewshot2_lr5e-6_steps40": [*ZERO_SHOT, "--few-shot", "2", "--learning-rate", "5e-6", "--steps", "40"],
        "fewshot2_prompts8_steps40": [*ZERO_SHOT, "--few-shot", "2", "--prompts-per-step", "8", "--steps", "40"],
        "fewshot2_prompts16": [*ZERO_SHOT, "--few-shot", "2", "--prompts-per-step", "16"],
        "fewshot2_prompts8_lr2e-5": [*ZERO_SHOT, "--few-shot", "2", "--prompts-per-step", "8", "--learning-rate", "2e-5"],
        "fewshot2_prompts16_steps40": [*ZERO_SHOT, "--few-shot", "2", "--prompts-per-step", "16", "--steps", "40"],
        # finalists against the chosen defaults (few-shot 2, 8 prompts, 40 steps), three seeds each (groups of 12: five)
        "fewshot2_prompts8_steps60": [*ZERO_SHOT, "--few-shot", "2", "--prompts-per-step", "8", "--steps", "60"],
        "fewshot2_prompts8_steps40_agg_token": [*ZERO_SHOT, "--few-shot", "2", "--prompts-per-step", "8", "--steps", "40",
                                                "--loss-aggregation", "token"],
        # the 60-step runs fell back after step 40: does decaying the learning rate to 0 keep the end of the run?
        "fewshot2_prompts8_steps40_cosine": [*ZERO_SHOT, "--few-shot", "2", "--prompts-per-step", "8", "--steps", "40",
                                             "--lr-schedule", "cosine"],
        # twice the samples a prompt, so that a problem the model gets right one time in ten more often yields a right reply
        "fewshot2_prompts8_steps40_group12": [*ZERO_SHOT, "--few-shot", "2", "--prompts-per-step", "8", "--steps", "40",
                                              "--group-size", "12"],
        # after step 20 about three groups in four are all right or all wrong and skipped: draw up to two more batches of
        # prompts until eight groups carry signal, instead of doubling every group (DAPO's dynamic sampling, except that
        # each drawn batch is its own update: lesson 14)
        "fewshot2_prompts8_steps40_resample": [*ZERO_SHOT, "--few-shot", "2", "--prompts-per-step", "8", "--steps", "40",
                                               "--zero-variance", "resample"],
        # the same, at most one extra batch a step: about two thirds of the sampling, for most of the extra groups?
        "fewshot2_prompts8_steps40_resample1": [*ZERO_SHOT, "--few-shot", "2", "--prompts-per-step", "8", "--steps", "40",
                                                "--zero-variance", "resample", "--max-resample", "1"],
        "fewshot2_prompts8_steps40_lr2e-5_linear": [*ZERO_SHOT, "--few-shot", "2", "--prompts-per-step", "8", "--steps", "40",
                                                    "--learning-rate", "2e-5", "--lr-schedule", "linear"],
    },
    # lesson 14b: the same budget through each estimator (the main job's defaults otherwise)
    "algorithms": {   # REINFORCE's three differ only in the baseline (sum / constant normaliser, as lesson 14b's step)
        "reinforce_none": ["--algo", "reinforce", "--baseline", "none", "--loss-aggregation", "constant"],
        "reinforce_batch_mean": ["--algo", "reinforce", "--baseline", "batch_mean", "--loss-aggregation", "constant"],
        "rloo": ["--algo", "reinforce", "--baseline", "leave_one_out", "--loss-aggregation", "constant"],
        "grpo": ["--algo", "grpo", "--scale-rewards", "group", "--loss-aggregation", "sequence", "--zero-variance", "keep"],
        "dr_grpo": ["--algo", "grpo", "--scale-rewards", "none", "--loss-aggregation", "constant", "--zero-variance", "keep"],
        "dapo": ["--algo", "grpo", "--scale-rewards", "group", "--loss-aggregation", "token", "--zero-variance", "resample",
                 "--eps-high", "0.28", "--mini-batch-size", "12"],   # two updates per batch: the second is off-policy, so clip-higher acts
    },
    # every technique the course teaches, once on the real model (issue 12, item 5)
    "techniques": {
        "kl_copy": ["--beta", "0.04", "--reference", "copy"],
        "kl_adapter": ["--lora", "--learning-rate", "2e-4", "--beta", "0.04", "--reference", "adapter"],
        "lora": ["--lora", "--learning-rate", "2e-4"],
        "entropy_bonus": ["--entropy-coef", "0.01"],
        "mu2": ["--num-iterations", "2", "--mini-batch-size", "12"],
        "reinforce": ["--algo", "reinforce"],
    },
    # lesson 16c: two seeds more of the ablation's winner (skipping) and of resampling, run after the five-seed
    # comparison, to see whether resampling's lead holds (the winner's own five seeds stay in the ablation group)
    "late_seeds": {
        "skip": [],
        "resample": ["--zero-variance", "resample"],
    },
    # the defaults (then: the ablation's winner, skipping), untouched, on tasks nobody tuned on, scored with math-verify
    # (issue 12, item 7); the `_resample` rows, the defaults since
    "generalise": {
        "subtraction": ["--data", "nbs/data/tasks/subtraction.jsonl", "--reward", "math"],
        "word_problems": ["--data", "nbs/data/tasks/word_problems.jsonl", "--reward", "math"],
        "three_sum": ["--data", "nbs/data/tasks/three_sum.jsonl", "--reward", "math"],
        # the same without the worked examples: their bare `#### N` replies also teach the model to answer without working
        "subtraction_zero_shot": ["--data", "nbs/data/tasks/subtraction.jsonl", "--reward", "math", "--few-shot", "0"],
        "word_problems_zero_shot": ["--data", "nbs/data/tasks/word_problems.jsonl", "--reward", "math", "--few-shot", "0"],
        "three_sum_zero_shot": ["--data", "nbs/data/tasks/three_sum.jsonl", "--reward", "math", "--few-shot", "0"],
        # the same rows with a `reasoning` column: the two worked examples show their working before `#### N`
        "subtraction_worked": ["--data", "nbs/data/tasks/subtraction_worked.jsonl", "--reward", "math"],
        "word_problems_worked": ["--data", "nbs/data/tasks/word_problems_worked.jsonl", "--reward", "math"],
        "three_sum_worked": ["--data", "nbs/data/tasks/three_sum_worked.jsonl", "--reward", "math"],
        # the worked files again with resampling of zero-variance groups (lesson 16c): does its lead carry to tasks
        # nobody tuned on, before it can become the default?
        "subtraction_worked_resample": ["--data", "nbs/data/tasks/subtraction_worked.jsonl", "--reward", "math",
                                        "--zero-variance", "resample"],
        "word_problems_worked_resample": ["--data", "nbs/data/tasks/word_problems_worked.jsonl", "--reward", "math",
                                          "--zero-variance", "resample"],
        "three_sum_worked_resample": ["--data", "nbs/data/tasks/three_sum_worked.jsonl", "--reward", "math",
                                      "--zero-variance", "resample"],
    },
    # the main job with place-value working in its two examples (scripts/make_tasks.py writes one file per seed)
    "working": {
        "place_value": ["--data", "nbs/data/tasks/addition_place_value_s{seed}.jsonl"],
    },
    # bf16 compute against float32 (issue 11: held-out accuracy within noise)
    "precision": {
        "bf16": ["--dtype", "bf16"],
        "fp32": ["--dtype", "fp32"],
    },
}

SUMMARY_KEYS = ("accuracy_before", "accuracy_after", "accuracy_before_se", "accuracy_after_se", "format_free_before",
                "format_free_after", "format_free_before_se", "format_free_after_se", "steps", "eval_problems",
                "seconds_per_step_median", "generation_seconds_median", "training_seconds_median", "tokens_per_s_median",
                "mfu_median", "train_seconds_this_run", "total_seconds_this_run", "compute_dtype", "metric", "reward")
CURVES = ("reward_mean", "completion_len", "zero_var_frac", "clip_ratio", "approx_kl", "kl", "entropy", "loss", "grad_norm",
          "truncated_rate", "time_generate", "time_train", "tokens_per_s", "mfu", "groups_trained", "resampled_batches", "n_updates")


def flags_for(group: str, name: str, seed: int) -> list[str] | None:
    "The experiment's flags as they run for `seed` (`{seed}` filled in), or None for a name the group does not hold."
    flags = GROUPS.get(group, {}).get(name)
    return None if flags is None else [f.replace("{seed}", str(seed)) for f in flags]


def run(group: str, names: list[str], seeds: list[int], extra: list[str]):
    experiments = GROUPS[group]
    for name in names or list(experiments):
        for seed in seeds:
            out = RUNS / group / name / f"s{seed}"
            if (out / "summary.json").exists(): continue
            cmd = [sys.executable, "-m", "lmtrain", "train", "--seed", str(seed), "--out", str(out), "--overwrite",
                   "--no-save-model", *AS_RUN, *flags_for(group, name, seed), *extra]
            print(f"[{time.strftime('%H:%M:%S')}] {group}/{name} seed {seed}: {' '.join(cmd[3:])}", flush=True)
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)   # --data paths are relative to the repository
            tail = done.stderr.strip().splitlines()[-1:] if done.returncode else done.stdout.strip().splitlines()[-1:]
            shutil.rmtree(out / "checkpoints", ignore_errors=True)   # weights + AdamW state are 1.4 GB a run; the evidence is the logs
            print(f"    exit {done.returncode} in {time.perf_counter() - t0:.0f} s: {tail}", flush=True)


def collect(group: str) -> Path:
    out = {}
    for folder in sorted((RUNS / group).glob("*/s*")):
        if not (folder / "summary.json").exists(): continue
        summary = json.loads((folder / "summary.json").read_text())
        history = json.loads((folder / "history.json").read_text())
        steps = history["batch_logs"]
        record = {k: summary.get(k) for k in SUMMARY_KEYS}
        record["curves"] = {k: [b.get(k) for b in steps] for k in CURVES if any(k in b for b in steps)}
        record["val"] = {k: v for k, v in history["history"].items() if k.startswith("val_") or k == "step"}
        record["flags"] = flags_for(group, folder.parent.name, int(folder.name[1:]))   # as run
        record["config"] = summary.get("config")   # the whole run's options, flags added with --extra included
        record["diagnosis"], record["warnings"] = own_reading(folder, summary)
        out.setdefault(folder.parent.name, {})[folder.name] = record
    EVIDENCE.mkdir(parents=True, exist_ok=True)
    path = EVIDENCE / f"{group}.json"
    path.write_text(json.dumps(out, indent=1))
    return path


def own_reading(folder: Path, summary: dict) -> tuple[dict, list[str]]:
    "What the main job now says about its own run (lesson 18), for runs made before it did: the same `read_own_run`."
    if "warnings" in summary and not os.environ.get("LMTRAIN_REREAD"): return summary.get("diagnosis", {}), summary["warnings"]
    from lmtrain import rewards
    from lmtrain.callbacks import History
    from lmtrain.cli import read_own_run
    from lmtrain.rollouts import load_rollouts
    history = History.from_json(folder / "history.json")
    max_new_tokens = (summary.get("config") or {}).get("sampling", {}).get("max_new_tokens")
    return read_own_run(folder, load_rollouts(folder / "eval_after.jsonl"), history, rewards.get(summary["metric"]),
                        summary.get("reward"), max_new_tokens, gain=summary["accuracy_after"] - summary["accuracy_before"])


def errors(group: str, names: list[str]) -> Path:
    "The held-out problems each run of `names` got wrong after training: question, reply, gold (a small file, for reading errors)."
    from lmtrain.rollouts import question_of   # the prompt's last user turn, as the run report shows it
    path = EVIDENCE / f"{group}_errors.json"
    out = json.loads(path.read_text()) if path.exists() else {}   # other experiments' entries stay
    for name in names or list(GROUPS[group]):
        for folder in sorted((RUNS / group / name).glob("s*")):
            if not (folder / "eval_after.jsonl").exists(): continue
            rows = [json.loads(line) for line in (folder / "eval_after.jsonl").read_text().splitlines() if line.strip()]
            out.setdefault(name, {})[folder.name] = {
                "problems": len(rows),
                "wrong": [{"question": question_of(r["prompt"]), "reply": r["completion"], "gold": r["target"]["answer"]}
                          for r in rows if (r.get("reward") or 0) < 1]}
    EVIDENCE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["run", "collect", "errors"])
    ap.add_argument("group", choices=sorted(GROUPS))
    ap.add_argument("--only", nargs="*", default=[], help="experiments of the group to run (default: all)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="flags added to every run")
    args = ap.parse_args()
    if args.action == "errors": return print(errors(args.group, args.only))
    if args.action == "run": run(args.group, args.only, args.seeds, args.extra)
    print(collect(args.group))


if __name__ == "__main__":
    main()
