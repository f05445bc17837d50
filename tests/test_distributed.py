"""Data-parallel training on 2 CPU processes (gloo) gives the update of 1 process, and checkpoints cross world sizes,
both with DDP and with FSDP2 (weights, gradients and optimizer state sharded across the 2 processes).

Five runs of tests/distributed_worker.py on a tiny random model (about 45 s on 2 cores): 1 process (in this one);
2 processes with DDP (`accelerate launch --multi_gpu --num_processes 2`: on a machine without GPUs it starts 2 CPU
processes through torchrun, where accelerate's `--cpu` flag would start only one); 2 processes with FSDP2
(`accelerate launch --use_fsdp --fsdp_version 2`, which `make_accelerator` honours on CPU); and after each 2-process
run, 1 process again, resuming the checkpoint the 2 processes wrote. Then the main job itself, `accelerate launch
-m lmtrain train`, on 2 processes: DDP, FSDP2, and FSDP2 with LoRA and a KL penalty (about 15 s each).

Tolerances. The 2 processes compute the same sums as the 1 process in another order (each rank sums its own
completions, padded to its own width, then the all-reduce adds the two halves), so float32 results differ in the last
bits: gradients (entries up to 0.66) agree to within 2.4e-7 here, and we allow 1e-6. Parameters go through AdamW, whose
first steps divide each gradient entry by its own magnitude plus eps=1e-8: an entry whose gradient is ~1e-8 turns a
1e-8 difference into a visible one. Measured: up to 6.5e-6 after updates of lr 1e-3 (DDP and FSDP2 alike; it moves
from run to run), and we allow 2e-5, 2% of one update. FSDP2 reduce-scatters the gradients, another summation
order: up to 2.4e-7, as DDP.
A real mistake is far larger: without the per-rank weights (the rank whose completions are fewer, or shorter, counted
as much as the other) the gradients differ by 0.02 to 0.14 on these runs.
"""
import collections, json, os, shutil, socket, subprocess, sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("distributed_worker.py")
GRAD_ATOL, PARAM_ATOL = 1e-6, 2e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"


def _accelerate_launch(n: int, fsdp: bool = False) -> list[str]:
    exe = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    engine = ["--use_fsdp", "--fsdp_version", "2"] if fsdp else ["--multi_gpu"]
    return [exe, "launch", *engine, "--num_processes", str(n), "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(_free_port())]


def _worker():
    import importlib.util
    spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "tag -> results: w1 (1 process), w2 (2, DDP), f2 (2, FSDP2), w1_from_w2 and w1_from_f2 (1 process resuming theirs)."
    out = tmp_path_factory.mktemp("dist")
    worker = _worker()                       # the 1-process runs go in this process: interpreter starts saved
    worker.main([str(out), "--tag", "w1"])
    for tag, fsdp in (("w2", False), ("f2", True)):
        _run(_accelerate_launch(2, fsdp) + [str(WORKER), str(out), "--tag", tag, "--resume", str(out / "ck_w1")])
        worker.main([str(out), "--tag", f"w1_from_{tag}", "--resume", str(out / f"ck_{tag}"), "--only-resume"])
    return out, {tag: torch.load(out / f"{tag}.pt", weights_only=False)
                 for tag in ("w1", "w2", "f2", "w1_from_w2", "w1_from_f2")}


ENGINES = {"ddp": "w2", "fsdp": "f2"}


def _close(a: torch.Tensor, b: torch.Tensor, atol: float) -> float:
    diff = float((a - b).abs().max())
    assert diff <= atol, f"max abs difference {diff:.3g} > {atol:g}"
    return diff


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", ["grpo", "reinforce_token", "grpo_kl", "grpo_lora_kl"])
def test_two_processes_take_the_one_process_update(runs, name, engine):
    _, results = runs
    one, two = results["w1"], results[ENGINES[engine]]
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert two["distributed_type"] == two["distributed_type_after"] == {"ddp": "MULTI_CPU", "fsdp": "FSDP"}[engine]
    assert len(one[name]) == len(two[name]) > 0
    for a, b in zip(one[name], two[name]):
        assert a["step"] == b["step"] and len(a["grads"]) == len(b["grads"]) == 1
        _close(a["grads"][0], b["grads"][0], GRAD_ATOL)
        _close(a["params"], b["params"], PARAM_ATOL)
        for key in ("reward_mean", "reward_std", "loss", "grad_norm", "entropy"):
            assert a["logs"][key] == pytest.approx(b["logs"][key], abs=1e-5), key
        if name == "grpo": assert a["logs"]["groups_trained"] == b["logs"]["groups_trained"]
        if "kl" in name: assert a["logs"]["kl"] == pytest.approx(b["logs"]["kl"], abs=1e-6)
    if "kl" in name: assert one[name][-1]["logs"]["kl"] > 0      # the reference really differs from the policy


def _kept_groups_per_rank(path: Path) -> dict:
    "step -> (groups with unequal rewards on rank 0, on rank 1), from the rollouts (groups 0-1 on rank 0, 2-3 on rank 1)."
    rewards = collections.defaultdict(list)
    for line in path.read_text().splitlines():
        r = json.loads(line); rewards[r["step"], r["group"]].append(r["reward"])
    kept = lambda step, g: len(set(rewards[step, g])) > 1
    return {s: (kept(s, 0) + kept(s, 1), kept(s, 2) + kept(s, 3)) for s in sorted({s for s, _ in rewards})}


@pytest.mark.parametrize("engine", ENGINES)
def test_the_hard_cases_were_exercised(runs, engine):
    "A step where one rank keeps no group (it runs an empty backward) and one where the ranks keep unequal numbers."
    out, results = runs
    one, two = results["w1"], results[ENGINES[engine]]
    kept = _kept_groups_per_rank(out / f"rollouts_{ENGINES[engine]}_grpo.jsonl")
    assert any(0 in k and sum(k) > 0 for k in kept.values()), kept
    assert any(0 not in k and k[0] != k[1] for k in kept.values()), kept
    assert two["grpo"][0]["logs"]["idle_batches"] == 1 and one["grpo"][0]["logs"]["idle_batches"] == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_rank_zero_writes_the_rollouts_of_every_rank_in_order(runs, engine):
    out, _ = runs
    fields = lambda tag: [(r["step"], r["group"], r["sample"], r["completion"], r["reward"])
                          for r in map(json.loads, (out / f"rollouts_{tag}_grpo.jsonl").read_text().splitlines())]
    assert fields("w1") == fields(ENGINES[engine]) and len(fields("w1")) == 4 * 4 * 4


@pytest.mark.parametrize("engine", ENGINES)
def test_unequal_minibatch_counts_do_not_deadlock(runs, engine):
    "mini_batch_size=3, 2 passes: a rank with no kept group pads with empty mini-batches; both take every optimizer step."
    _, results = runs
    a, b = results["w1"]["grpo_minibatch"][0], results[ENGINES[engine]]["grpo_minibatch"][0]
    # the counts follow the sampled groups (how many kept, on which rank), so they are read, not written in
    assert len(a["grads"]) == len(b["grads"]) == a["logs"]["n_updates"] == b["logs"]["n_updates"] > 0, (a["logs"], b["logs"])
    assert b["logs"]["idle_batches"] > 0, b["logs"]   # one rank padded with empty mini-batches: the case under test
    for ga, gb in zip(a["grads"], b["grads"]): _close(ga, gb, GRAD_ATOL)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("direction", ["saved by 1, resumed by 2", "saved by 2, resumed by 1"])
def test_checkpoints_resume_across_world_sizes(runs, direction, engine):
    _, results = runs
    tag = ENGINES[engine]
    resumed = results[tag]["resumed"] if direction.endswith("by 2") else results[f"w1_from_{tag}"]["resumed"]
    straight = {s["step"]: s["params"] for s in results["w1"]["grpo"]}
    assert [s["step"] for s in resumed] == [3, 4]
    for s in resumed: _close(s["params"], straight[s["step"]], PARAM_ATOL)


@pytest.mark.parametrize("engine,extra", [("ddp", []), ("fsdp", []), ("fsdp", ["--lora", "--beta", "0.1"])])
def test_the_entry_script_runs_under_accelerate_launch(tmp_path, engine, extra):
    "`lmtrain train` itself on 2 processes (`accelerate launch -m lmtrain train`): rank 0 writes one summary, every rollout, a loadable model."
    from transformers import AutoModelForCausalLM
    out = tmp_path / "run"
    _run(_accelerate_launch(2, fsdp=engine == "fsdp") + [
        "-m", "lmtrain", "train", "--model", "tiny", "--steps", "2", "--eval-every", "1", "--prompts-per-step", "2", "--group-size", "2",
        "--max-new-tokens", "4", "--train-size", "6", "--eval-size", "4", "--device", "cpu", "--out", str(out), *extra])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    assert summary["distributed_type"] == {"ddp": "MULTI_CPU", "fsdp": "FSDP"}[engine]
    # a group of 2 for each step's 2 prompts, and for each rank's 1 prompt of every batch drawn to replace zero-variance
    # groups (the job resamples them by default, lesson 16c; `resampled_batches` is summed over ranks)
    resampled = sum(b["resampled_batches"] for b in json.loads((out / "history.json").read_text())["batch_logs"])
    assert resampled > 0   # a random model's replies all score 0: every step resamples, on every rank
    assert len((out / "rollouts.jsonl").read_text().splitlines()) == 2 * (2 * 2 + resampled)
    assert (out / "checkpoints" / "last" / "meta.json").exists()
    # whole weights in a plain transformers class, LoRA merged: every key of the model and nothing else
    model, info = AutoModelForCausalLM.from_pretrained(out / "model", output_loading_info=True)
    assert type(model).__name__ == "LlamaForCausalLM" and json.loads((out / "model" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert not info["missing_keys"] and not info["unexpected_keys"], info


def test_prompts_must_divide_among_ranks(runs):
    _, results = runs
    assert "prompts_per_step=3 does not divide among 2 processes" in results["w2"]["indivisible_error"]
