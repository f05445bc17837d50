"The `lmtrain` console script end to end on a tiny random model (seconds, offline)."
import json, shutil, subprocess, sys

import pytest


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from lmtrain.testing import tiny_model
    folder = tmp_path_factory.mktemp("tiny")
    model, tokenizer = tiny_model(seed=0)
    model.save_pretrained(folder); tokenizer.save_pretrained(folder)
    return folder


def _lmtrain():
    exe = shutil.which("lmtrain")
    return [exe] if exe else [sys.executable, "-c", "import sys; from lmtrain.cli import main; sys.exit(main())"]


def test_console_script_trains_and_writes_outputs(tiny_dir, tmp_path):
    out = tmp_path / "run"
    cmd = _lmtrain() + ["train", "--model", str(tiny_dir), "--steps", "2", "--eval-every", "1", "--group-size", "2",
                        "--prompts-per-step", "2", "--max-new-tokens", "4", "--train-size", "6", "--eval-size", "2",
                        "--threads", "1", "--algo", "reinforce", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and 0.0 <= summary["accuracy_after"] <= 1.0
    for name in ("history.json", "rollouts.jsonl", "report.html", "curves.png", "accuracy.png", "model/config.json"):
        assert (out / name).exists(), name


def test_bad_data_file_is_a_clear_error(tmp_path):
    from lmtrain.cli import main
    assert main(["train", "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x")]) == 2


def test_flags_come_from_the_config():
    from lmtrain.cli import parse_config
    cfg = parse_config(["train", "--algo", "grpo", "--group-size", "3", "--lora", "--no-save-model"])
    assert (cfg.sampling.group_size, cfg.lora.enabled, cfg.save_model) == (3, True, False)


def test_every_option_of_the_tree_is_a_flag():
    from lmtrain.cli import RunConfig, build_parser
    from lmtrain.configs import leaf_fields
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {s for a in train._actions for s in a.option_strings}
    assert [l.flag for l in leaf_fields(RunConfig) if l.flag not in flags] == []


def test_python_m_lmtrain_runs_the_main_job(tiny_dir, tmp_path):
    done = subprocess.run([sys.executable, "-m", "lmtrain", "train", "--model", str(tiny_dir), "--steps", "1", "--group-size", "2",
                           "--prompts-per-step", "2", "--max-new-tokens", "3", "--train-size", "4", "--eval-size", "2", "--val-size", "2",
                           "--threads", "1", "--no-save-model", "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 1


USER_REWARDS = '''
from lmtrain.rewards import Reward, as_text
class Parity(Reward):
    "An lmtrain Reward: 0.75 for a reply of even length, 0.125 for odd (numbers no built-in reward pays)."
    name = "parity"
    def compute(self, y_true, y_pred): return 0.75 if len(as_text(y_pred)) % 2 == 0 else 0.125
def parity_trl(completions, **kwargs):
    "TRL's reward signature: one number per completion."
    return [0.5 if len(c) % 2 == 0 else 0.25 for c in completions]
'''


@pytest.mark.parametrize("spec,even,odd", [("my_rewards:Parity", 0.75, 0.125), ("my_rewards:parity_trl", 0.5, 0.25)])
def test_a_reward_of_your_own_from_the_current_folder(tiny_dir, tmp_path, spec, even, odd):
    "`lmtrain train --reward my_rewards:fn`, run in the folder that holds my_rewards.py: trained and scored with it (each form)."
    project, bin_dir = tmp_path / "project", tmp_path / "bin"
    project.mkdir(); bin_dir.mkdir()
    (project / "my_rewards.py").write_text(USER_REWARDS)
    # what pip writes for the `lmtrain` console script: its sys.path starts at bin/, not at the folder it is run from
    (bin_dir / "lmtrain").write_text("import sys\nfrom lmtrain.cli import main\nsys.exit(main())\n")
    out = project / "run"
    done = subprocess.run([sys.executable, str(bin_dir / "lmtrain"), "train", "--model", str(tiny_dir), "--reward", spec,
                           "--steps", "1", "--group-size", "2", "--prompts-per-step", "2", "--max-new-tokens", "5",
                           "--temperature", "1.0", "--train-size", "4", "--eval-size", "4", "--val-size", "2", "--threads", "1",
                           "--zero-variance", "skip",   # one batch a step: its 2 x 2 rollouts, whatever the rewards
                           "--no-save-model", "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=project)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reward"] == summary["metric"] == spec          # the metric is the reward's correctness term: itself
    paid = lambda r: even if len(r["completion"]) % 2 == 0 else odd
    trained = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    held_out = [json.loads(line) for line in (out / "eval_before.jsonl").read_text().splitlines()]
    assert len(trained) == 2 * 2 and len(held_out) == 4
    assert all(r["reward"] == paid(r) for r in trained + held_out), [(r["completion"], r["reward"]) for r in trained + held_out]
    assert summary["accuracy_before"] == pytest.approx(sum(map(paid, held_out)) / 4)
