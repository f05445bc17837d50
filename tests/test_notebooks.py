"""Real results stay on the page: every `#| slow` code cell of a lesson keeps its saved outputs.

CI skips the cells flagged `slow` (settings.ini, `tst_flags`): they run the real model for minutes. Their saved
outputs are the evidence the page shows, so a slow cell whose outputs were cleared, or that was edited and never
re-run, leaves a claim without its numbers. A saved error is no evidence either.
"""
import json
import re
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1] / "nbs"
SLOW = re.compile(r"^\s*#\|\s*slow\b", re.M)


def slow_cells(path: Path) -> list[dict]:
    "The code cells of notebook `path` that carry the `#| slow` directive."
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [c for c in cells if c["cell_type"] == "code" and SLOW.search("".join(c["source"]))]


def problems(cell: dict) -> str | None:
    "Why a slow cell's saved outputs are no evidence, or None when they are."
    outputs = cell.get("outputs") or []
    if not outputs: return "no saved output"
    errors = [o.get("ename", "error") for o in outputs if o.get("output_type") == "error"]
    return f"a saved error ({', '.join(errors)})" if errors else None


NOTEBOOKS = sorted(p for p in NBS.glob("*.ipynb") if slow_cells(p))


def test_directive_pattern():
    assert SLOW.search("#| slow\nx = 1") and SLOW.search("#|slow") and SLOW.search("import x\n#| slow")
    assert not SLOW.search("#| slowly") and not SLOW.search("# | slow") and not SLOW.search("x = 1  #| slow")
    assert problems({"outputs": []}) == "no saved output"
    assert problems({"outputs": [{"output_type": "error", "ename": "ValueError"}]}) == "a saved error (ValueError)"
    assert problems({"outputs": [{"output_type": "stream", "name": "stdout", "text": ["1\n"]}]}) is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_slow_cells_keep_their_outputs(path):
    bad = [(c.get("id"), why) for c in slow_cells(path) if (why := problems(c))]
    assert not bad, (f"{path.name}: {len(bad)} `#| slow` cell(s) without evidence on the page: "
                     + "; ".join(f"cell {cid}: {why}" for cid, why in bad)
                     + ". Run them (the real model) and save their outputs in the notebook.")
