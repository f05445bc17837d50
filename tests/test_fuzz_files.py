"""Fuzz tests for the files lmtrain reads that someone else may have written (issue 14): program files
(`load_program`, `Program.load`) and rollout files (`load_rollouts`, and the step of `lmtrain train --resume` that
trims `rollouts.jsonl`).

Each input must end within a bound (`LMTRAIN_FUZZ_BOUND_S`, 2 s) in a value or a typed failure: a program, a list
of rollouts, or a `FileFormatError` naming the file; never another exception, never a hang, and never code that a
file names. Inputs are saved files with one part replaced by something hostile (a class path to a module that must
not be imported, deep nesting, 400-digit and non-finite numbers, wrong types, paths out of the folder), or bytes
that are no JSON at all.

The default size runs in CI in seconds; the nightly size (`make fuzz`) is one variable away:

    LMTRAIN_FUZZ_EXAMPLES=5000 pytest -q -p no:cacheprovider tests/test_fuzz_files.py
"""
import asyncio
import copy
import json
import os
import re
import sys
import time
import warnings

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from lmtrain.cli import _drop_rollouts_after
from lmtrain.data_models import MathQuestion, NumericalAnswer
from lmtrain.files import FileFormatError
from lmtrain.generators import ChainOfThought, Generator
from lmtrain.language_models import LanguageModel
from lmtrain.program_files import load_program
from lmtrain.programs import Input, Program
from lmtrain.rollouts import Rollout, load_rollouts, save_rollouts

EXAMPLES = int(os.environ.get("LMTRAIN_FUZZ_EXAMPLES", "200"))
BOUND = float(os.environ.get("LMTRAIN_FUZZ_BOUND_S", "2.0"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
TRAP = "lmtrain_fuzz_trap"   # a module on sys.path that no load may import (it would leave a file behind)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    try: return fn(*args, **kwargs)
    finally:
        seconds = time.perf_counter() - start
        assert seconds < BOUND, f"{fn.__name__} took {seconds:.2f} s (bound {BOUND} s)"


@pytest.fixture(scope="module")
def trap(tmp_path_factory):
    "A module that, if a load imported it, would write a file: the proof that no code named by a file ran."
    folder = tmp_path_factory.mktemp("site")
    ran = folder / "ran"
    (folder / f"{TRAP}.py").write_text(f"open({str(ran)!r}, 'w').write('imported')\nclass Trap:\n    pass\n")
    sys.path.insert(0, str(folder))
    yield ran
    sys.path.remove(str(folder))
    assert TRAP not in sys.modules and not ran.exists()


# ---------------------------------------------------------------- hostile JSON values

HOSTILE_STRINGS = [f"{TRAP}:Trap", f"{TRAP}:Trap.__init__", "subprocess:Popen", "os:system", "builtins:eval",
                   "lmtrain.programs:Program", "lmtrain.generators:Generator", "lmtrain.generators:ChainOfThought",
                   "lmtrain.data_models:NumericalAnswer", "lmtrain.data_models:MathQuestion", "Program", "Generator",
                   "NumericalAnswer", "", " ", ":", "a:b:c", "..", "../..", "/etc/passwd", "../../outside", "local/..",
                   "local//etc", "http://127.0.0.1:9/v1", "openai/gpt-4o-mini", "lmtrain.program", "lmtrain.rollouts",
                   "answer", "question", "solve", "x", "input_0", "NaN", "1e999", "9" * 400, "\x00", "\ud800", "é😀",
                   "{", "[", '"', "\\", "a" * 5000]
scalars = (st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.sampled_from([10**400, -10**400, 2**63, -1, 0])
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(HOSTILE_STRINGS) | st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["class", "config", "data_model", "import", "name", "schema", "fields", "type", "properties",
                     "language_model", "model", "api_base", "api_key", "examples", "instructions", "modules", "nodes",
                     "parents", "module", "id", "weights", "state", "format", "version", "withheld", "$ref", "$defs",
                     "anyOf", "items", "required", "title", "default"]) | st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
deep = st.integers(100, 50_000).map(lambda n: f"__DEEP_{n}__")   # spliced in by `encode` as n nested brackets


def paths(value, prefix=()):
    "Every path to a value in a JSON document, the root included."
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items(): yield from paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value): yield from paths(v, prefix + (i,))


def mutate(record, path, how, value):
    "`record` with the value at `path` replaced, deleted, or given a sibling key."
    record = copy.deepcopy(record)
    if not path: return value if how == "replace" else record
    parent = record
    for key in path[:-1]: parent = parent[key]
    key = path[-1]
    if how == "replace": parent[key] = value
    elif how == "delete": parent.pop(key) if isinstance(parent, dict) else parent.pop(key)
    elif isinstance(parent, dict): parent[f"{key}_extra" if isinstance(key, str) else "extra"] = value
    else: parent.append(value)
    return record


def encode(record) -> bytes:
    text = json.dumps(record, allow_nan=True, ensure_ascii=False)
    text = re.sub(r'"__DEEP_(\d+)__"', lambda m: "[" * int(m[1]) + "]" * int(m[1]), text)
    return text.encode("utf-8", errors="surrogatepass")


# ---------------------------------------------------------------- program files

class Solver(Program):
    "A subclass-style program: the file names its class, which the caller passes in `custom_objects`."
    def __init__(self, language_model=None, **kwargs):
        super().__init__(**kwargs)
        lm = language_model or LanguageModel.from_function(lambda m: '{"answer": 1}')
        self.think = ChainOfThought(data_model=NumericalAnswer, language_model=lm, name="think")

    async def call(self, inputs): return await self.think(inputs)


async def saved_programs(folder) -> list[dict]:
    "Files lmtrain writes: a functional program (two generators, examples, instructions) and a subclass's."
    lm = LanguageModel("openai/gpt-4o-mini", temperature=0.3, seed=3, api_key="sk-never-saved")
    x = Input(data_model=MathQuestion)
    plan = await ChainOfThought(data_model=NumericalAnswer, language_model=lm, name="plan")(x)
    out = await Generator(data_model=NumericalAnswer, language_model=lm, name="solve")([x, plan])
    program = Program(inputs=x, outputs=out, name="fuzzed")
    program.get_module("solve").set_state({"instructions": "Add.", "examples": [({"question": "1 + 1?"}, {"answer": 2})]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = [json.loads(program.save(folder / "functional.json").read_text()),
                   json.loads(Solver().save(folder / "subclass.json").read_text())]
    return records


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    return asyncio.run(saved_programs(tmp_path_factory.mktemp("programs")))


def check_load(path, **kwargs):
    "Load a program file: a Program, or a FileFormatError that names the file."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try: program = timed(load_program, path, **kwargs)
        except FileFormatError as e:
            assert e.path == str(path) and str(e).startswith(str(path)), e
            event(f"FileFormatError at {str(e.field).split('.')[0]}")
            return None
    assert isinstance(program, Program)
    event("loaded")
    return program


@FUZZ
@given(st.data())
def test_a_program_file_loads_or_is_refused_and_never_runs_code(tmp_path, trap, programs, data):
    kind = data.draw(st.sampled_from(["functional", "subclass"]), label="kind")
    record = programs[0] if kind == "functional" else programs[1]
    path = data.draw(st.sampled_from(list(paths(record))), label="path")
    how = data.draw(st.sampled_from(["replace", "delete", "add"]), label="how")
    value = data.draw(json_values | deep, label="value")
    file = tmp_path / "program.json"
    file.write_bytes(encode(mutate(record, path, how, value)))
    custom = {"Solver": Solver} if kind == "subclass" else None
    check_load(file, custom_objects=custom)
    if kind == "functional":   # the caller's language model, and Program.load of the state into a built program
        check_load(file, language_model=LanguageModel.from_function(lambda m: '{"answer": 1}'))
    assert TRAP not in sys.modules and not trap.exists()


@FUZZ
@given(st.binary(max_size=400) | st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"format"', b":", b",",
                                                            b'"lmtrain.program"', b'"state"', b'"version"', b"1",
                                                            b"NaN", b"\xff", b"\x00", b" "]), max_size=80).map(b"".join))
def test_bytes_that_are_not_a_program_file_are_refused(tmp_path, data):
    file = tmp_path / "program.json"
    file.write_bytes(data)
    assert check_load(file) is None


# ---------------------------------------------------------------- rollout files

BASE_ROLLOUT = Rollout(step=3, group=1, sample=2, prompt="What is 2 + 2?", completion="#### 4",
                       completion_tokens=[1, 2, 3], token_texts=["#", "###", " 4"], logprobs=[-0.1, float("-inf"), -2.0],
                       output={"answer": 4.0}, target=4, reward=1.0, breakdown={"math": 1.0, "error": None},
                       advantage=0.5).model_dump(mode="json")
good_lines = st.integers(0, 10).map(lambda step: encode({**BASE_ROLLOUT, "step": step}))
hostile_lines = st.one_of(
    st.builds(lambda path, how, value: encode(mutate(BASE_ROLLOUT, path, how, value)),
              st.sampled_from(list(paths(BASE_ROLLOUT))[1:]), st.sampled_from(["replace", "delete", "add"]), json_values),
    st.binary(max_size=120), (json_values | deep).map(encode),
    st.sampled_from([b"", b"   ", b"[1, 2]", b"null", b"{" * 5000, b"[" * 50_000, b'{"step": ' + b"9" * 5000 + b"}",
                     b'{"step": "three", "gro', b'{"reward": NaN}', b'{"reward": 1e999}', b"\xff\xfe", b"\x00"]))
# a file: some good lines and at most two hostile ones, in any order
rollout_files = st.tuples(st.lists(good_lines, max_size=6), st.lists(hostile_lines, max_size=2)).flatmap(
    lambda t: st.permutations(t[0] + t[1]))


def write_lines(path, lines, last_newline=True):
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + (b"\n" if last_newline else b""))


@FUZZ
@given(rollout_files, st.booleans())
def test_a_rollout_file_loads_or_names_its_bad_line(tmp_path, lines, last_newline):
    path = tmp_path / "rollouts.jsonl"
    write_lines(path, lines, last_newline)
    try: rollouts = timed(load_rollouts, path)
    except FileFormatError as e:
        assert e.path == str(path) and isinstance(e.line, int) and 1 <= e.line <= max(1, len(lines)), e
        assert str(e).startswith(f"{path}:{e.line}:") and "\n" not in str(e)
        event("FileFormatError")
    else:
        assert all(isinstance(r, Rollout) for r in rollouts) and len(rollouts) <= len(lines)
        event(f"{len(rollouts)} rollouts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = timed(load_rollouts, path, skip_bad_lines=True)   # a reader that skips: always a list
    assert all(isinstance(r, Rollout) for r in kept)
    if kept:   # what was read saves and reads back the same
        again = tmp_path / "again.jsonl"
        save_rollouts(again, kept)
        assert [r.model_dump_json() for r in load_rollouts(again)] == [r.model_dump_json() for r in kept]


@FUZZ
@given(rollout_files, st.booleans(), st.integers(-1, 10))
def test_resume_trims_a_rollout_file_or_names_its_bad_line(tmp_path, lines, last_newline, step):
    path = tmp_path / "rollouts.jsonl"
    write_lines(path, lines, last_newline)
    try: timed(_drop_rollouts_after, path, step)
    except FileFormatError as e:
        assert e.path == str(path) and isinstance(e.line, int) and str(e).startswith(f"{path}:{e.line}:"), e
        event("FileFormatError")
    else:   # what is left is whole lines of rollouts from before the checkpoint's step
        kept = [line for line in path.read_bytes().split(b"\n") if line]   # not splitlines: U+0085 is no line end here
        rows = [json.loads(line) for line in kept]
        assert all(isinstance(r, dict) and isinstance(r.get("step", 0), int) and r.get("step", 0) < step for r in rows)
        event(f"kept {len(kept)} of {len(lines)}")
