"""Benchmarks for the scaling lesson (nbs/19_scaling.ipynb), each comparing peers in the same run.

    python scripts/bench_distributed.py steps --model tiny       # seconds per step: 1 process (1 and 2 threads) vs 2 processes
    python scripts/bench_distributed.py steps --model tiny --layouts 1x1,2x1,2x1fsdp   # DDP against FSDP2
    python scripts/bench_distributed.py steps --model local/smollm2-135m-instruct --steps 3
    python scripts/bench_distributed.py http                     # ServerSampler over loopback HTTP vs the same generation in process

`steps` runs the main job, `lmtrain train` (GRPO, the same global batch and seed), under each layout (`python -m lmtrain
train` for 1 process, `accelerate launch ... -m lmtrain train` for 2) and reads the
per-step times it logs (generation and training, the slowest rank's); the first step is a warm-up and is left out.
`http` times a fake OpenAI-compatible server on 127.0.0.1 whose completions come from a tiny model, and subtracts the
time the server spent generating: what is left is the price of HTTP, JSON and turning the answer into `Samples`.
"""
import argparse, json, os, socket, statistics, subprocess, sys, tempfile, time
from pathlib import Path

MAIN_JOB = ["-m", "lmtrain", "train"]   # the one main job, for 1 process or many


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def run_layout(name, processes, threads, args, out: Path, engine: str = "ddp") -> dict:
    flags = ["--model", args.model, "--steps", str(args.steps + 1), "--prompts-per-step", str(args.prompts),
             "--group-size", str(args.group), "--max-new-tokens", str(args.tokens), "--temperature", "1.0",
             "--eval-every", "1000", "--eval-size", "2", "--train-size", "64", "--threads", str(threads),
             "--no-save-model", "--reward", "last_number", "--zero-variance", "keep", "--out", str(out / name)]
    if processes == 1: cmd = [sys.executable, *MAIN_JOB, *flags]
    else:
        exe = str(Path(sys.executable).with_name("accelerate"))
        launcher = ["--use_fsdp", "--fsdp_version", "2"] if engine == "fsdp" else ["--multi_gpu"]
        cmd = [exe, "launch", *launcher, "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(free_port()), *MAIN_JOB, *flags]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode: raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    logs = json.loads((out / name / "history.json").read_text())["batch_logs"][1:]   # step 1 is the warm-up
    gen = statistics.median(b["time_generate"] for b in logs)
    train = statistics.median(b["time_train"] for b in logs)
    return {"layout": name, "processes": processes, "engine": engine, "threads_each": threads, "generate_s": round(gen, 3),
            "train_s": round(train, 3), "step_s": round(gen + train, 3), "wall_s": round(time.perf_counter() - t0, 1)}


def bench_steps(args):
    out = Path(tempfile.mkdtemp())
    layouts = {"1x1": ("1 process, 1 thread", 1, 1), "1x2": ("1 process, 2 threads", 1, 2),
               "2x1": ("2 processes, 1 thread each", 2, 1), "2x1fsdp": ("2 processes, FSDP2, 1 thread each", 2, 1, "fsdp")}
    rows = []
    for key in args.layouts.split(","):
        name, processes, threads, *engine = layouts[key]
        rows.append(run_layout(name, processes, threads, args, out, *engine))
    load = os.getloadavg()[0]
    print(f"model {args.model}; GRPO, {args.prompts} prompts x {args.group} samples, up to {args.tokens} new tokens; "
          f"median of {args.steps} steps after a warm-up; {os.cpu_count()} cores, load average {load:.1f}")
    for r in rows: print(json.dumps(r))


def bench_http(args):
    import http.server, threading
    import torch
    from lmtrain.samplers import PolicySampler, ServerSampler
    from lmtrain.testing import tiny_model
    from lmtrain.policy import Policy
    torch.set_num_threads(1)
    model, tokenizer = tiny_model(seed=0)
    policy = Policy(model, tokenizer)
    inner = PolicySampler(Policy(*tiny_model(seed=0)), seed_per_group=True)
    spent = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self): self._send({"data": [{"id": "tiny"}]})
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            t0 = time.perf_counter()
            text = tokenizer.decode(body["prompt"])                  # the chat-formatted prompt, as sent
            s = inner.policy.sample([text], n=body["n"], max_new_tokens=body["max_tokens"],
                                    temperature=body["temperature"], seed=body.get("seed"))
            choices = []
            for i in range(len(s)):
                ids = s.completion_ids[i][s.completion_mask[i].bool()].tolist()
                lps = s.logprobs[i][s.completion_mask[i].bool()].tolist()
                choices.append({"index": i, "text": s.texts[i], "token_ids": ids, "finish_reason": "length" if s.truncated[i] else "stop",
                                "logprobs": {"tokens": [f"token_id:{t}" for t in ids], "token_logprobs": lps}})
            spent.append(time.perf_counter() - t0)
            self._send({"choices": choices})
        def _send(self, data):
            raw = json.dumps(data).encode()
            self.send_response(200); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw))); self.end_headers(); self.wfile.write(raw)
        def log_message(self, *a): pass

    inner.policy.chat_template = False                                   # the server gets text that is already formatted
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sampler = ServerSampler(policy, f"http://127.0.0.1:{server.server_address[1]}", max_concurrency=1)
    prompts = [f"What is {a} + {a + 3}?" for a in range(args.prompts)]
    local, remote, gen = [], [], []
    for rep in range(args.reps + 1):
        t0 = time.perf_counter(); PolicySampler(policy, seed_per_group=True).sample(prompts, n=args.group, max_new_tokens=args.tokens, temperature=1.0, seed=rep)
        t_local = time.perf_counter() - t0
        spent.clear()
        t0 = time.perf_counter(); sampler.sample(prompts, n=args.group, max_new_tokens=args.tokens, temperature=1.0, seed=rep)
        t_remote = time.perf_counter() - t0
        if rep: local.append(t_local); remote.append(t_remote); gen.append(sum(spent))
    server.shutdown()
    overhead = statistics.median(r - g for r, g in zip(remote, gen))
    print(json.dumps({"prompts": args.prompts, "samples_per_prompt": args.group, "max_new_tokens": args.tokens,
                      "in_process_s": round(statistics.median(local), 4), "server_total_s": round(statistics.median(remote), 4),
                      "server_generation_s": round(statistics.median(gen), 4), "overhead_s": round(overhead, 4),
                      "overhead_ms_per_request": round(1000 * overhead / args.prompts, 2),
                      "overhead_ms_per_completion": round(1000 * overhead / (args.prompts * args.group), 3),
                      "local_logprob_rows": sampler.stats["local_logprobs"], "retokenised": sampler.stats["retokenised"]}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["steps", "http"])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--layouts", default="1x1,1x2,2x1", help="processes x threads each, comma-separated")
    args = ap.parse_args()
    bench_steps(args) if args.what == "steps" else bench_http(args)
