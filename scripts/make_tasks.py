"""Write the arithmetic tasks that check the main job's defaults on data nobody tuned on (issue 12, generalisation).

Six JSON-lines files in `nbs/data/tasks/`, 800 rows each (the last 200 are held out by `lmtrain train --data`),
seeded so that they are the same on every machine. Each task comes twice, with the same rows in the same order:

  subtraction.jsonl     "What is 47 - 19?"                          two operands, 1-60, result >= 0
  word_problems.jsonl   "Mia has 14 marbles. She gives away 5 ..."   one or two steps of + and -, small numbers
  three_sum.jsonl       "Add 12, 7 and 25."                          three operands, 1-30

  <task>_worked.jsonl   the same rows with a `reasoning` column: the working a teacher would write
                        ("47 - 10 = 37, 37 - 9 = 28"), which `--few-shot` shows before each example's `#### N`

    python scripts/make_tasks.py      # rewrites the six files, and the three below

Lesson 16c also asks whether working in the reply would lift the main job's own task. For that it needs the main
job's addition problems, seed by seed (each seed draws its own split and its own two examples), with place-value
working ("28 + 20 = 48, 48 + 5 = 53") where the default examples show "28 + 25 = 53":

  addition_place_value_s<seed>.jsonl   the default task's 600 training and 200 held-out problems of that seed, in
                                       order, so that `--data` with `--seed <seed>` draws the same examples, batches
                                       and held-out problems as the main job
"""
import json, random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "nbs" / "data" / "tasks"
NAMES = ["Mia", "Noah", "Ava", "Liam", "Zoe", "Omar", "Ines", "Kai", "Lena", "Ravi"]
THINGS = ["marbles", "apples", "stickers", "books", "coins", "pencils", "shells", "cards"]


def place_value(a: int, op: str, b: int) -> str:
    "`a op b` worked as a teacher would: b's tens, then its ones (one step when b has only one of them)."
    apply = (lambda x, y: x + y) if op == "+" else (lambda x, y: x - y)
    tens, ones = b - b % 10, b % 10
    if tens and ones: return f"{a} {op} {tens} = {apply(a, tens)}, {apply(a, tens)} {op} {ones} = {apply(a, b)}"
    return f"{a} {op} {b} = {apply(a, b)}"


def subtraction(rng):
    a, b = sorted((rng.randint(1, 60), rng.randint(1, 60)), reverse=True)
    return f"What is {a} - {b}?", a - b, place_value(a, "-", b)   # take away the tens, then the ones


def word_problem(rng):
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    start, gain, loss = rng.randint(5, 40), rng.randint(1, 20), rng.randint(1, 5)
    if rng.random() < 0.5:
        return (f"{name} has {start} {thing}. {name} gets {gain} more. How many {thing} does {name} have now?",
                start + gain, f"{start} + {gain} = {start + gain}")
    return (f"{name} has {start} {thing}, finds {gain} more and then gives {loss} away. "
            f"How many {thing} does {name} have left?", start + gain - loss,
            f"{start} + {gain} = {start + gain}, {start + gain} - {loss} = {start + gain - loss}")


def three_sum(rng):
    a, b, c = (rng.randint(1, 30) for _ in range(3))
    return f"Add {a}, {b} and {c}.", a + b + c, f"{a} + {b} = {a + b}, {a + b} + {c} = {a + b + c}"


def write(name, make, n=800, seed=0):
    rng, seen, rows = random.Random(f"{name}-{seed}"), set(), []
    while len(rows) < n:
        prompt, answer, working = make(rng)
        if prompt in seen: continue   # a held-out problem is never also a training problem
        seen.add(prompt); rows.append({"prompt": prompt, "answer": str(answer), "reasoning": working})
    plain, worked = OUT / f"{name}.jsonl", OUT / f"{name}_worked.jsonl"
    plain.write_text("".join(json.dumps({"prompt": r["prompt"], "answer": r["answer"]}) + "\n" for r in rows))
    worked.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return plain, worked


def write_place_value(seed: int):
    from lmtrain.tasks import TaskConfig, load_task   # the main job's own split, so the seeds pair up with its runs
    task, rows = load_task(TaskConfig(few_shot=0), seed=seed), []
    for xs, ys in (task.train, task.held_out):
        for x, y in zip(xs, ys):
            a, b = (int(t) for t in x.question.removeprefix("What is ").split("?")[0].split(" + "))
            rows.append({"prompt": task.question(x), "answer": str(a + b), "reasoning": place_value(a, "+", b)})
    path = OUT / f"addition_place_value_s{seed}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in [("subtraction", subtraction), ("word_problems", word_problem), ("three_sum", three_sum)]:
        print(*write(name, make))
    for seed in range(3):
        print(write_place_value(seed))
