"""Benchmarks for `lmtrain.language_models`: two figures, each against a peer measured in the same run.

1. Local micro-batching: 32 concurrent calls to the embedded SmolLM2 against the same 32 calls made one
   after the other (target: at least 4x faster).
2. Evaluation wall time for a fixed-latency model: 256 examples, 100 ms per call, batches of 32, against
   the ideal 256 / 32 * 0.1 s = 0.8 s (target: at most 1.2x ideal). Measured with a stand-in provider
   (the LanguageModel machinery alone) and over real HTTP on loopback through litellm.

    python scripts/bench_language_models.py                 # both
    python scripts/bench_language_models.py --skip-local    # only the fixed-latency part (seconds)
"""
import argparse
import asyncio
import json
import time

from lmtrain.data_models import NumericalAnswer
from lmtrain.language_models import LanguageModel
from lmtrain.local import SMOLLM2_NAME
from lmtrain.testing import FakeOpenAIServer, ServerReply


def reasoning_prompts(n: int) -> list[str]:
    "Small word problems that invite a worked answer (replies of tens of tokens, as in GSM8K)."
    return [f"Sam has {3 + i} apples and buys {40 - i} more, then gives away {i % 5 + 1}. "
            f"How many apples does Sam have? Think step by step." for i in range(n)]


async def local_speedup(model: str, n: int, max_tokens: int) -> dict:
    "Wall time of n sequential calls and of the same n calls made concurrently (greedy)."
    lm = LanguageModel(model, max_tokens=max_tokens, temperature=0.0)
    await lm("warm up", max_tokens=2)  # loads the model; not timed
    prompts = reasoning_prompts(n)
    start = time.perf_counter()
    sequential = [await lm(p) for p in prompts]
    t_seq = time.perf_counter() - start
    lm.backend.batcher.batch_sizes.clear()
    start = time.perf_counter()
    concurrent = await lm.batch(prompts)
    t_conc = time.perf_counter() - start
    return dict(model=model, calls=n, max_tokens=max_tokens, sequential_s=t_seq, concurrent_s=t_conc,
                speedup=t_seq / t_conc, batches=list(lm.backend.batcher.batch_sizes),
                tokens_sequential=sum(c.usage.completion_tokens for c in sequential),
                tokens_concurrent=sum(c.usage.completion_tokens for c in concurrent),
                identical_replies=sum(a.text == b.text for a, b in zip(sequential, concurrent)))


async def evaluation_wall_time(lm: LanguageModel, n: int, batch_size: int) -> float:
    "n calls made the way an evaluation makes them: batch after batch, each batch concurrent; all must parse."
    prompts = [json.dumps({"question": f"q{i}"}) for i in range(n)]
    start = time.perf_counter()
    for i in range(0, n, batch_size):
        replies = await lm.batch(prompts[i:i + batch_size], NumericalAnswer)
        bad = [r for r in replies if not r.ok]
        if bad: raise RuntimeError(f"{len(bad)} calls failed, e.g. {bad[0].outcome}: {bad[0].error}")
    return time.perf_counter() - start


async def fixed_latency(n: int, batch_size: int, latency_s: float) -> dict:
    ideal = -(-n // batch_size) * latency_s
    stand_in = LanguageModel.from_function(lambda m: '{"answer": 1}', latency_s=latency_s, max_concurrency=batch_size)
    t_fn = await evaluation_wall_time(stand_in, n, batch_size)
    with FakeOpenAIServer(lambda body, seen: ServerReply('{"answer": 1}', delay_s=latency_s)) as server:
        remote = LanguageModel("openai/fixed-latency", api_base=server.api_base, api_key="sk-loopback",
                               max_concurrency=batch_size, timeout=30)
        await remote("warm up")  # litellm imports its provider code on the first call; not timed
        t_http = await evaluation_wall_time(remote, n, batch_size)
    return dict(examples=n, batch_size=batch_size, latency_s=latency_s, ideal_s=ideal,
                stand_in_s=t_fn, stand_in_ratio=t_fn / ideal, loopback_http_s=t_http, loopback_http_ratio=t_http / ideal)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=SMOLLM2_NAME, help="local model for the batching benchmark")
    ap.add_argument("--calls", type=int, default=32, help="calls in the batching benchmark")
    ap.add_argument("--max-tokens", type=int, default=64, help="new tokens per call in the batching benchmark")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--skip-local", action="store_true", help="skip the local batching benchmark")
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.1, help="seconds per call of the fixed-latency model")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = ap.parse_args()
    results = {}
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if not args.skip_local:
        r = results["local_batching"] = asyncio.run(local_speedup(args.model, args.calls, args.max_tokens))
        import torch
        print(f"[1] local micro-batching, {r['model']}, {r['calls']} calls, <= {r['max_tokens']} new tokens, greedy, "
              f"{torch.get_num_threads()} torch threads")
        print(f"    sequential {r['sequential_s']:.2f} s ({r['tokens_sequential']} tokens), "
              f"concurrent {r['concurrent_s']:.2f} s ({r['tokens_concurrent']} tokens, batches {r['batches']})")
        print(f"    speed-up {r['speedup']:.1f}x (target >= 4x: {'PASS' if r['speedup'] >= 4 else 'FAIL'}); "
              f"identical greedy replies {r['identical_replies']}/{r['calls']}")
    r = results["fixed_latency"] = asyncio.run(fixed_latency(args.examples, args.batch_size, args.latency))
    print(f"[2] evaluation of {r['examples']} examples, {r['latency_s'] * 1000:.0f} ms per call, batch {r['batch_size']}: "
          f"ideal {r['ideal_s']:.3f} s")
    print(f"    stand-in provider (LanguageModel machinery): {r['stand_in_s']:.3f} s = {r['stand_in_ratio']:.2f}x ideal "
          f"(target <= 1.2x: {'PASS' if r['stand_in_ratio'] <= 1.2 else 'FAIL'})")
    print(f"    loopback HTTP through litellm:               {r['loopback_http_s']:.3f} s = {r['loopback_http_ratio']:.2f}x ideal")
    if args.json: print(json.dumps(results))


if __name__ == "__main__":
    main()
