"""Benchmark lmtrain's MathVerify reward against math-verify called directly on the main thread.

Scores N GSM8K-style (gold, prediction) pairs (default 10,000) and prints pairs per second for:
  direct      math_verify.parse + verify on the main thread (its own signal-based timeouts)
  lmtrain     MathVerify(): plain-number fast path, else a bounded worker process
  no-fast     MathVerify(fast_path=False): every pair through the worker process (the price of the bound)
  batch       MathVerify().explain_batch over the pool's workers
and the ratio of each to `direct`, how often lmtrain and direct agree (with the disagreements), and
the time each takes on adversarial input (`9^9^9^9^9`, a 100 kB string).

Usage: python scripts/bench_math_verify.py [--n 10000] [--workers 2] [--seed 0] [--no-adversarial] [--json out.json]
"""
import argparse
import json
import logging
import os
import random
import re
import sys
import time
from pathlib import Path

from lmtrain.rewards import MathVerify, MathVerifyPool


def gsm8k_answers() -> list[tuple[str, str]]:
    "(solution, final answer) pairs from GSM8K (train + test) under $LMTRAIN_DATA or the shared data folder."
    here = Path(__file__).resolve().parent
    for folder in (os.environ.get("LMTRAIN_DATA", ""), here / "../../shared/data", "/work/shared/data"):
        if folder and (Path(folder) / "gsm8k" / "test.jsonl").exists():
            rows = []
            for split in ("train", "test"):
                path = Path(folder) / "gsm8k" / f"{split}.jsonl"
                if path.exists(): rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            return [(r["answer"], r["answer"].rpartition("####")[2].strip().replace(",", "")) for r in rows]
    rng = random.Random(0)  # no data: synthetic arithmetic answers in the same shape
    return [(f"{a} + {b} = {a + b}\n#### {a + b}", str(a + b)) for a, b in
            ((rng.randint(1, 999), rng.randint(1, 999)) for _ in range(2000))]


def prediction(solution: str, n: str, rng: random.Random) -> tuple[str, str]:
    "`(kind, text)`: one prediction for a gold answer `n`, in a format an LM might use (right or wrong)."
    thinking = re.sub(r"<<[^>]*>>", "", solution.rpartition("####")[0]).strip()
    num = int(n) if re.fullmatch(r"-?\d+", n) else None
    wrong = str(num + rng.choice([-3, -1, 1, 2, 10])) if num is not None else n + "1"
    big = f"{num:,}" if num is not None else n
    kind = rng.choices(["hashes", "answer_is", "boxed", "decimal", "tags", "commas", "wrong", "wrong_boxed",
                        "fraction", "no_marker", "prose"],
                       weights=[25, 12, 10, 6, 6, 4, 20, 5, 3, 5, 4])[0]
    return kind, {"hashes": f"{thinking}\n#### {n}", "answer_is": f"{thinking} The answer is ${big}.",
            "boxed": f"So the answer is $\\boxed{{{n}}}$.", "decimal": f"{n}.0", "tags": f"<answer>{n}</answer>",
            "commas": f"#### {big}", "wrong": f"{thinking}\n#### {wrong}", "wrong_boxed": f"\\boxed{{{wrong}}}",
            "fraction": f"$\\frac{{{2 * num}}}{{2}}$" if num is not None else n,
            "no_marker": f"{thinking} In total that is {n}", "prose": "I am not sure how to solve this one."}[kind]


def direct(gold: str, pred: str) -> float:
    from math_verify import parse, verify
    return float(verify(parse(gold), parse(pred)))


def rate(fn, pairs) -> tuple[list[float], float]:
    start = time.perf_counter()
    out = fn(pairs)
    seconds = time.perf_counter() - start
    return out, len(pairs) / seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="number of (gold, prediction) pairs")
    ap.add_argument("--workers", type=int, default=2, help="math-verify worker processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-adversarial", action="store_true", help="skip the adversarial timings")
    ap.add_argument("--json", type=Path, help="write the results here as JSON")
    args = ap.parse_args(argv)
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    rng = random.Random(args.seed)
    answers = gsm8k_answers()
    kinds, pairs = [], []
    for sol, n in (rng.choice(answers) for _ in range(args.n)):
        kind, text = prediction(sol, n, rng)
        kinds.append(kind); pairs.append((n, text))
    direct(*pairs[0])  # imports math_verify here too, outside the timings

    def fresh(**kw):
        "A MathVerify on a new, started pool: every mode starts with cold worker caches."
        return MathVerify(pool=MathVerifyPool(size=args.workers).start(), **kw)
    print(f"{len(pairs)} GSM8K-style pairs, {args.workers} worker processes, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs")

    results = {}
    ref, results["direct"] = rate(lambda ps: [direct(g, p) for g, p in ps], pairs)
    slow = fresh(fast_path=False)
    nofast, results["no-fast"] = rate(lambda ps: [slow(g, p) for g, p in ps], pairs)
    slow.pool.close()
    batched = fresh()
    batch, results["batch"] = rate(lambda ps: [b.total for b in batched.explain_batch([g for g, _ in ps], [p for _, p in ps])], pairs)
    batched.pool.close()
    fast = fresh()
    ours, results["lmtrain"] = rate(lambda ps: [fast(g, p) for g, p in ps], pairs)
    paths = [fast.explain(g, p).details.get("path") for g, p in pairs[:2000]]
    pool = fast.pool

    print(f"\n{'mode':<10}{'pairs/s':>12}{'vs direct':>12}")
    for mode, pps in results.items():
        print(f"{mode:<10}{pps:>12,.0f}{pps / results['direct']:>11.2f}x")
    print(f"\nfast path decided {paths.count('fast') / len(paths):.0%} of pairs (first 2,000)")
    for name, got in (("lmtrain", ours), ("no-fast", nofast), ("batch", batch)):
        diff = [i for i, (a, b) in enumerate(zip(ref, got)) if a != b]
        print(f"{name} agrees with direct math-verify on {1 - len(diff) / len(pairs):.2%} of pairs ({len(diff)} differ)")
        by = {}
        for i in diff: by.setdefault((kinds[i], ref[i], got[i]), []).append(i)
        for (kind, r, g), idx in sorted(by.items(), key=lambda kv: -len(kv[1])):
            i = idx[0]
            print(f"   {len(idx):>5} x {kind:<10} direct {r} / {name} {g}, e.g. gold {pairs[i][0]!r} pred {pairs[i][1][-50:]!r}")
        results[f"{name}_disagreements"] = {f"{k} direct={r} {name}={g}": len(v) for (k, r, g), v in by.items()}
    print(f"mean reward: direct {sum(ref) / len(ref):.4f}, lmtrain {sum(ours) / len(ours):.4f}")

    if not args.no_adversarial:
        print(f"\n{'adversarial input':<28}{'lmtrain s':>10}{'direct s':>10}")
        adversarial = {"9^9^9^9^9": "9^9^9^9^9", "$9^{9^{9^{9^9}}}$": "$9^{9^{9^{9^9}}}$",
                       "'1 ' * 50,000 (100 kB)": "1 " * 50_000, "'x' * 100,000": "x" * 100_000}
        results["adversarial"] = {}
        for label, text in adversarial.items():
            start = time.perf_counter(); b = fast.explain("18", text); ours_s = time.perf_counter() - start
            start = time.perf_counter(); direct("18", text); direct_s = time.perf_counter() - start
            results["adversarial"][label] = {"lmtrain_s": ours_s, "direct_s": direct_s, "error": b.error}
            print(f"{label:<28}{ours_s:>10.2f}{direct_s:>10.2f}   {b.error or ''}")
    results["pool_stats"] = dict(pool.stats)
    pool.close()
    if args.json: args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
