"""The package's layers (nbs/index.ipynb, "The floors"): imports only point down, never in a circle, and modules stay small.

Every `import lmtrain...` and relative import in every module of the package is read with `ast`, including the
ones inside functions (an import in a function body that climbs back up is still an arrow up).
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lmtrain"

# Bottom to top. A module may import modules of its own floor (without a circle) and of the floors below it.
FLOORS = [
    ("foundations", ["files", "configs"]),
    ("data models", ["data_models", "parsing"]),
    ("datasets", ["datasets", "datasets.gsm8k", "datasets.synthetic"]),
    ("rewards and metrics", ["rewards", "rewards.answers", "rewards.math", "rewards.text", "rewards.verify_server", "metrics"]),
    ("local models", ["local", "decoding", "testing"]),
    ("language models", ["backends", "language_models"]),
    ("programs and prompt training", ["generators", "programs", "program_files", "callbacks", "training", "optimizers", "judges"]),
    ("weight training", ["policy", "samplers", "rollouts", "reinforce", "grpo", "checkpoints", "trainer", "finetuning", "tasks",
                         "program_weights", "distributed"]),
    ("inspection", ["plots", "utils", "widgets", "diagnostics", "reports"]),
    ("jobs", ["cli", "__main__"]),
]
FLOOR = {module: i for i, (_, modules) in enumerate(FLOORS) for module in modules}

# Modules allowed past ~450 lines, each with its reason.
LONG_MODULES = {
    "program_files": (485, "a program's file is one concern: its schema, the registry it may build from, the secrets it "
                           "must not hold, the weights folder it names, the bounds on the schemas it rebuilds (nodes, depth); "
                           "splitting it would scatter one promise (no code runs from a file) over two modules"),
    "parsing": (520, "the robust parser and its one number grammar belong together (issue 10: 'one number parser'); "
                     "about 420 lines of code, the rest nbdev cell headers"),
}
MAX_LINES = 450


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__": parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in PACKAGE.rglob("*.py") if p.name != "_modidx.py"}
    found.pop("", None)            # lmtrain/__init__: the lazy public API, above every floor
    return found


def imports_of(name: str, path: Path) -> set[str]:
    "The lmtrain modules `path` imports, wherever the import statement is."
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                stem = ".".join([*base, node.module] if node.module else base)
                targets = [stem] if node.module else [f"{stem}.{a.name}".strip(".") for a in node.names]
                targets = ["lmtrain." + t if t else "lmtrain" for t in targets]
            else:
                targets = [node.module] if node.module else []
                targets += [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            if t == "lmtrain" or not t.startswith("lmtrain."): continue
            short = t.removeprefix("lmtrain.")
            while short and short not in ALL: short = short.rpartition(".")[0]   # lmtrain.rewards.Reward -> rewards
            if short and short != name: out.add(short)
    return out


ALL = set(modules())
GRAPH = {name: imports_of(name, path) for name, path in modules().items()}


def test_every_module_is_on_a_floor():
    assert sorted(set(GRAPH) - set(FLOOR)) == [], "add the new module to FLOORS (and to the floors of nbs/index.ipynb)"


def test_imports_only_point_down():
    up = [f"{a} ({FLOORS[FLOOR[a]][0]}) imports {b} ({FLOORS[FLOOR[b]][0]})"
          for a, targets in GRAPH.items() for b in targets if a in FLOOR and b in FLOOR and FLOOR[b] > FLOOR[a]]
    assert up == [], "\n".join(up)


def test_no_import_circle():
    state, stack, cycles = {}, [], []
    def visit(n):
        state[n] = "open"; stack.append(n)
        for m in sorted(GRAPH.get(n, ())):
            if state.get(m) == "open": cycles.append(stack[stack.index(m):] + [m])
            elif m not in state: visit(m)
        stack.pop(); state[n] = "done"
    for n in sorted(GRAPH):
        if n not in state: visit(n)
    assert cycles == [], " ; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_small(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= LONG_MODULES.get(name, (MAX_LINES, ""))[0], f"lmtrain/{name}: {lines} lines; split it (one room per concern)"


def test_the_checker_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from lmtrain.training import compile_program\n    import lmtrain.trainer\n")
    assert imports_of("probe", probe) == {"training", "trainer"}
