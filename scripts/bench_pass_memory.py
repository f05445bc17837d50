"""Memory of one SmolLM2 training pass (forward and backward, bf16 compute, float32 weights) by its shape.

Lesson 13 sizes `LossConfig.micro_batch_tokens` from these numbers: memory follows the token positions a pass runs
(distinct prompts x prompt length + rows x completion length), not its completion tokens alone. Each shape runs in
a fresh process, and the figure printed is that process's peak resident memory above what it held once the model
was loaded, so the shapes do not share an allocator's leftovers. Random token ids stand in for real text: the cost
of a pass depends on its shape, not on the words.

    python scripts/bench_pass_memory.py            # the shapes lesson 13 quotes
    python scripts/bench_pass_memory.py 16 400 228 4   # rows, prompt tokens, completion tokens, distinct prompts
"""
import resource, subprocess, sys, time

SHAPES = [(48, 148, 32, 8), (8, 400, 228, 2), (8, 2000, 228, 2), (4, 2000, 228, 1)]   # the main job's largest pass; GSM8K-length
# completions after short and many-shot prompts; the last is what the positions budget lets through of the third


def one_pass(rows: int, prompt: int, completion: int, prompts: int) -> str:
    import torch
    from lmtrain.local import load_causal_lm
    from lmtrain.policy import Policy
    from lmtrain.reinforce import pass_positions
    if rows % prompts: raise SystemExit(f"{rows} rows do not divide among {prompts} prompts")
    torch.set_num_threads(2)
    model, tokenizer = load_causal_lm(device="cpu")   # host memory is what ru_maxrss measures
    policy = Policy(model, tokenizer, compute_dtype=torch.bfloat16)
    model.train()
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    g = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(100, 40000, (prompts, prompt), generator=g).repeat_interleave(rows // prompts, 0)
    completion_ids = torch.randint(100, 40000, (rows, completion), generator=g)
    started = time.perf_counter()
    logprobs, _ = policy.token_logprobs(prompt_ids, torch.ones_like(prompt_ids), completion_ids, torch.ones_like(completion_ids))
    (-logprobs.sum()).backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (f"{rows:>4} rows x {completion:>3} completion tokens ({rows * completion:>5}), {prompts} distinct prompts of {prompt} "
            f"({pass_positions(prompts, prompt, rows, completion):>5} positions): "
            f"+{(peak - loaded) / 2**20:.2f} GiB over the loaded model, {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) == 5:
        print(one_pass(*map(int, sys.argv[1:])))
    else:
        for shape in SHAPES:
            out = subprocess.run([sys.executable, __file__, *map(str, shape)], capture_output=True, text=True)
            print(out.stdout.strip() or f"{shape}: failed ({out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
