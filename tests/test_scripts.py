"""The benchmark scripts that lessons read their real results from still run end to end (on a tiny random model)."""
import asyncio, importlib.util, json, statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_optimizers_smoke_writes_what_lesson_08_reads(tmp_path):
    script = load_script("compare_optimizers")
    out = tmp_path / "optimizers.json"
    asyncio.run(script.main(script.parse_args(["--smoke", "--seeds", "0", "1", "--threads", "1", "--out", str(out)])))
    record = json.loads(out.read_text())
    runs = {(r["arm"], r["seed"]) for r in record["runs"]}
    # the untrained program is greedy and has no seed: evaluated once; every optimizer on every seed
    assert runs == {("no_training", 0)} | {(arm, s) for arm in script.ARMS[1:] for s in (0, 1)}
    for arm, s in record["summary"].items():
        rs = [r for r in record["runs"] if r["arm"] == arm]
        assert s["strict"] == [r["strict"] for r in rs] and s["strict_mean"] == statistics.fmean(s["strict"])
        assert all(0 <= r["format_free"] <= 1 and r["n"] == record["n_test"] and len(r["replies"]) == 3 for r in rs)
    two_phase = [r for r in record["runs"] if r["arm"] == "random_then_bootstrap"]
    assert all(len(r["val_reward_by_epoch"]) == record["epochs"] for r in two_phase)   # one validation per epoch of both phases
    # --resume keeps what is there and adds only what is missing
    asyncio.run(script.main(script.parse_args(["--smoke", "--seeds", "0", "1", "2", "--arms", "random_few_shot", "--resume",
                                               "--threads", "1", "--out", str(out)])))
    again = json.loads(out.read_text())
    assert again["runs"][:len(record["runs"])] == record["runs"]
    assert [(r["arm"], r["seed"]) for r in again["runs"][len(record["runs"]):]] == [("random_few_shot", 2)]
    # ... but not into a file written with other settings, which it leaves as it was
    with pytest.raises(SystemExit, match="other settings.*epochs"):
        asyncio.run(script.main(script.parse_args(["--smoke", "--epochs", "3", "--resume", "--threads", "1", "--out", str(out)])))
    assert json.loads(out.read_text()) == again


def test_compare_optimizers_splits_share_no_question():
    script = load_script("compare_optimizers")
    data = script.disjoint_splits(dict(train=24, val=16, test=64), ("+", "-"), None)
    questions = [[q.question for q in data[split][0]] for split in ("train", "val", "test")]
    assert [len(q) for q in questions] == [24, 16, 64] and len(set().union(*questions)) == 104
    assert all(len(x) == len(y) for x, y in data.values())
