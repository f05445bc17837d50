"""Crash safety of the main job: SIGKILL at random moments and inside each step of a checkpoint write, then `--resume`.

Each chain of attempts is killed again and again until one attempt finishes; the run it leaves must equal the
uninterrupted run: the same final weights (bit for bit), the same history (every logged number but timings), the
same rollouts. A killed attempt leaves no temporary folder behind once the next attempt has written a checkpoint.
"""
import json, os, random, signal, subprocess, sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("crash_worker.py")
ARGS = ["train", "--model", "tiny", "--steps", "16", "--eval-every", "4", "--checkpoint-every", "1", "--group-size", "2",
        "--prompts-per-step", "2", "--max-new-tokens", "4", "--train-size", "8", "--eval-size", "2", "--val-size", "2",
        "--temperature", "1.0", "--learning-rate", "1e-3", "--threads", "1", "--no-save-model"]
POINTS = ["temp-made", "state-written", "before-rename", "between-renames", "after-renames"]
TIMING = ("time_", "tokens_per_s", "train_gflops", "mfu")


def attempt(out: Path, kill_at: str | None = None, kill_after: float | None = None) -> int:
    "One `lmtrain train` attempt on `out`, resuming or restarting as a user would; killed as asked; its exit code."
    has_checkpoint = any((out / "checkpoints" / name / "meta.json").exists() for name in ("last", ".last.old"))
    has_run = out.exists() and any(out.iterdir())
    flag = ["--resume"] if has_checkpoint else ["--overwrite"] if has_run else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LMTRAIN_KILL_AT": kill_at or "none:0"}
    proc = subprocess.Popen([sys.executable, str(WORKER), *ARGS, "--out", str(out), *flag], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try: proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired: proc.send_signal(signal.SIGKILL); proc.wait()
    err = proc.stderr.read()
    assert proc.returncode in (0, -signal.SIGKILL), f"attempt failed (exit {proc.returncode}):\n{err[-3000:]}"
    return proc.returncode


def finish(out: Path, max_attempts: int = 20) -> int:
    "Attempts without kills until the run completes; how many it took."
    for n in range(1, max_attempts + 1):
        if attempt(out) == 0: return n
    raise AssertionError(f"{out}: no attempt finished")


def final(out: Path) -> tuple:
    "(trained weights, history without timings, rollouts) of a finished run."
    state = torch.load(out / "checkpoints" / "last" / "state.pt", map_location="cpu", weights_only=True)
    history = json.loads((out / "history.json").read_text())
    logs = [{k: v for k, v in b.items() if not k.startswith(TIMING)} for b in history["batch_logs"]]
    epochs = {k: v for k, v in history["history"].items() if not k.startswith(TIMING)}
    rollouts = (out / "rollouts.jsonl").read_text().splitlines()
    return state["model"], (history["epoch"], epochs, logs), rollouts


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("crash") / "reference"
    assert attempt(out) == 0
    return final(out)


def assert_same_run(out: Path, reference):
    weights, history, rollouts = final(out)
    ref_weights, ref_history, ref_rollouts = reference
    assert weights.keys() == ref_weights.keys() and all(torch.equal(weights[k], ref_weights[k]) for k in weights)
    assert history == ref_history
    assert rollouts == ref_rollouts
    leftovers = [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers                     # no temporary or aside folder survives
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 16


def test_killed_inside_each_step_of_a_checkpoint_write(tmp_path, reference):
    out, kills = tmp_path / "run", 0
    for _ in range(2):                                    # every attempt dies in its 2nd checkpoint write, at each point in turn
        for point in POINTS:
            if attempt(out, kill_at=f"{point}:2") == -signal.SIGKILL: kills += 1
    finish(out)
    assert kills == 10                                    # with the 10 random ones below: 20 kills in all
    assert_same_run(out, reference)


def test_killed_at_random_moments(tmp_path, reference):
    rng, kills, chains = random.Random(0), 0, 0
    while kills < 10:                                     # 10 kills for sure: a chain that finishes first is checked, and a new one starts
        out, chains = tmp_path / f"run{chains}", chains + 1
        while attempt(out, kill_after=rng.uniform(0.5, 6.0)) == -signal.SIGKILL:
            kills += 1
            if kills >= 10: finish(out); break
        assert_same_run(out, reference)
    assert kills == 10
