"""Write the arithmetic tasks that check the main job's defaults on data nobody tuned on (issue 12, generalisation).

Three JSON-lines files in `nbs/data/tasks/`, each 800 rows of {"prompt", "answer"} (the last 200 are held out by
`lmtrain train --data`), seeded so that they are the same on every machine:

  subtraction.jsonl     "What is 47 - 19?"                          two operands, 1-60, result >= 0
  word_problems.jsonl   "Mia has 14 marbles. She gives away 5 ..."   one or two steps of + and -, small numbers
  three_sum.jsonl       "Add 12, 7 and 25."                          three operands, 1-30

    python scripts/make_tasks.py      # rewrites the three files
"""
import json, random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "nbs" / "data" / "tasks"
NAMES = ["Mia", "Noah", "Ava", "Liam", "Zoe", "Omar", "Ines", "Kai", "Lena", "Ravi"]
THINGS = ["marbles", "apples", "stickers", "books", "coins", "pencils", "shells", "cards"]


def subtraction(rng):
    a, b = sorted((rng.randint(1, 60), rng.randint(1, 60)), reverse=True)
    return f"What is {a} - {b}?", a - b


def word_problem(rng):
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    start, gain, loss = rng.randint(5, 40), rng.randint(1, 20), rng.randint(1, 5)
    if rng.random() < 0.5:
        return f"{name} has {start} {thing}. {name} gets {gain} more. How many {thing} does {name} have now?", start + gain
    return (f"{name} has {start} {thing}, finds {gain} more and then gives {loss} away. "
            f"How many {thing} does {name} have left?", start + gain - loss)


def three_sum(rng):
    a, b, c = (rng.randint(1, 30) for _ in range(3))
    return f"Add {a}, {b} and {c}.", a + b + c


def write(name, make, n=800, seed=0):
    rng, seen, rows = random.Random(f"{name}-{seed}"), set(), []
    while len(rows) < n:
        prompt, answer = make(rng)
        if prompt in seen: continue   # a held-out problem is never also a training problem
        seen.add(prompt); rows.append({"prompt": prompt, "answer": str(answer)})
    path = OUT / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in [("subtraction", subtraction), ("word_problems", word_problem), ("three_sum", three_sum)]:
        print(write(name, make))
