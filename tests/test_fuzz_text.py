"""Fuzz tests for every text-facing entry point of the lower floors (issue 14): the parser and its number grammar, every
reward `lmtrain.rewards.get` knows (and the text rewards), reward specs, and the JSON-lines dataset loaders.

Each input must end within a bound (`LMTRAIN_FUZZ_BOUND_S`, 2 s) in a value or a typed failure: never an exception
escaping, never a hang, never a non-finite number. Hostile inputs are built from the fragments that broke parsers
before (markers, quotes, escapes, `NaN`, 400-digit numbers), repeated up to tens of thousands of characters, so that a
quadratic step shows up as a broken bound.

The default size runs in CI in well under a minute. The nightly size is one variable away:

    LMTRAIN_FUZZ_EXAMPLES=5000 pytest -q -p no:cacheprovider tests/test_fuzz_text.py
"""
import json
import math
import os
import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from lmtrain.data_models import DataModel, MathQuestion, NumericalAnswer, NumericalAnswerWithThinking
from lmtrain.datasets import DatasetError, gsm8k, load_jsonl_pairs
from lmtrain.parsing import (ParseFailure, answer_number, exact_number, extract_answer, last_number, parse_gold_number,
                             parse_number, parse_with_route)
from lmtrain.rewards import REWARDS, Breakdown, ExactMatch, FormatReward, GSM8K_PATTERN, correctness_term, get, quality_reward
from lmtrain.rewards.math import default_pool

EXAMPLES = int(os.environ.get("LMTRAIN_FUZZ_EXAMPLES", "200"))
BOUND = float(os.environ.get("LMTRAIN_FUZZ_BOUND_S", "2.0"))
SLOW_EXAMPLES = max(20, EXAMPLES // 5)   # math-verify runs in a worker: each example can take up to its 1 s timeout
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
FUZZ_SLOW = settings(max_examples=SLOW_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------- hostile text

FRAGMENTS = ['{', '}', '[', ']', '"', "'", ':', ',', ',}', '\\', '\\"', '\\u20', '```', '```json\n', '\n', ' ', '\t',
             '####', '#### ', '#### 18', '\\boxed{', '\\frac{', '\\dfrac{1}{2}', '}{', '<answer>', '</answer>', '<think>',
             '</think>', 'The answer is', 'answer is ', 'Answer:', 'about ', '$', '$1,000', '1,00', '1,000,000', '18', '-3.5',
             '.5', '3/4', '1/0', '1e5', '6.02e23', '1e999', '-1e-999', 'e', 'E+', '9' * 50, '9' * 400, 'NaN', 'nan',
             'Infinity', '-Infinity', 'inf', 'true', 'True', 'null', 'None', '"answer"', '"answer": ', "'answer': ",
             'answer', '"thinking"', 'thinking', 'a', 'aaaa', '// c', '\x00', '\u2212', '\ud7ff', 'é', '😀', '=', '-', '+',
             '(', ')', '**', '^', '9^9^9', '{"answer": {"answer": 18}}', '{"answer": 18}']
fragment = st.sampled_from(FRAGMENTS) | st.text(max_size=6)
short_text = st.text(max_size=300) | st.lists(fragment, max_size=60).map("".join)
# An opening (a brace, a marker), then one short run repeated thousands of times, then a closing: where a step of
# the parser backtracks over a run, this is where it shows (a quadratic step takes seconds at these sizes).
OPENINGS = ["", "{", '{"answer": ', "{'answer': ", "{answer: ", "#### ", "\\boxed{", "<answer>", "The answer is ",
            "```json\n{", '{"thinking": "', "[", "$"]
RUNS = ["a", "ab ", "a ", "1", "1,", "9", " ", "\t", "\n", "'", '"', "{", "[", ",", ":", "a:", "'a", "'a: ", "\\", "e",
        "#", "####", "<answer>", '{"a":', "{'a',", "- ", "$", "1 / ", "\\frac{1}{", "answer is "]
CLOSINGS = ["", "}", "x", ":", "'", '"', "]", "</answer>", "\n#### 5", "}}}"]
amplified = st.builds(lambda o, r, n, c: (o + r * n + c)[:60_000], st.sampled_from(OPENINGS), st.sampled_from(RUNS),
                      st.integers(500, 60_000), st.sampled_from(CLOSINGS))
hostile_text = short_text | amplified | st.binary(max_size=300).map(lambda b: b.decode("latin-1"))


def timed(fn, *args):
    if isinstance(args[0], str): event(f"text of {10 ** len(str(len(args[0]))) // 10:,}+ characters")
    start = time.process_time()   # CPU time: a quadratic step shows, a loaded machine (CI beside other jobs) does not
    out = fn(*args)
    seconds = time.process_time() - start
    assert seconds < BOUND, f"{getattr(fn, '__name__', fn)} took {seconds:.2f} s (bound {BOUND} s) on {args[0]!r:.200}"
    return out


def finite_numbers(value) -> bool:
    "Every number in a parsed model (at any depth) is finite."
    if isinstance(value, DataModel): value = value.model_dump()
    if isinstance(value, bool): return True
    if isinstance(value, (int, float)): return math.isfinite(value)
    if isinstance(value, dict): return all(finite_numbers(v) for v in value.values())
    if isinstance(value, (list, tuple)): return all(finite_numbers(v) for v in value)
    return True


class Nested(DataModel):
    answer: float
    parts: list[float] = []
    detail: NumericalAnswer | None = None


MODELS = (NumericalAnswer, NumericalAnswerWithThinking, MathQuestion, Nested)

# ---------------------------------------------------------------- the parser


@FUZZ
@given(hostile_text)
def test_parser_ends_in_a_model_or_a_failure(text):
    for model in MODELS:
        out, route = timed(parse_with_route, text, model)
        assert isinstance(out, (model, ParseFailure)) and isinstance(route, str)
        if isinstance(out, ParseFailure): assert out.message and out.expected and not out
        else: assert finite_numbers(out), (text[:200], out)
    answer = timed(extract_answer, text)
    assert answer is None or isinstance(answer, str)


@FUZZ
@given(hostile_text)
def test_number_entry_points_end_in_a_finite_number_or_none(text):
    for fn in (parse_number, last_number, answer_number):
        value = timed(fn, text)
        assert value is None or (isinstance(value, float) and math.isfinite(value)), (fn.__name__, text[:200], value)
    exact = timed(exact_number, text)
    assert exact is None or isinstance(exact, Fraction)
    try: value = timed(parse_gold_number, text)
    except ValueError as e: assert str(e).startswith("expected")
    else: assert math.isfinite(value)


# ---------------------------------------------------------------- rewards

GOLDS = [NumericalAnswer(answer=18), NumericalAnswerWithThinking(thinking="9 * 2", answer=18), "18", "1,000",
         "She has 9 * 2 = 18\n#### 18", {"answer": 0.5}, 10**400, "9" * 400, "NaN", None]
predictions = hostile_text | st.builds(lambda t: [{"role": "assistant", "content": t}], short_text) | \
              st.builds(lambda a: {"answer": a}, st.floats() | st.integers() | short_text) | \
              st.sampled_from([None, 18, float("nan"), NumericalAnswer(answer=18), ParseFailure("X", "?", "no JSON")])
FAST_SPECS = [name for name in REWARDS if name != "math"] + ["format=1,last_number=0.5"]


def check(breakdown):
    assert isinstance(breakdown, Breakdown) and isinstance(breakdown.total, float)
    assert math.isfinite(breakdown.total) and 0.0 <= breakdown.total <= 1.0, breakdown
    assert breakdown.error is None or isinstance(breakdown.error, str)
    json.dumps(breakdown.to_dict())   # a breakdown always goes into a rollout file


@FUZZ
@given(st.sampled_from(GOLDS), predictions)
def test_every_fast_reward_ends_in_a_breakdown(gold, pred):
    rewards = [get(spec) for spec in FAST_SPECS] + [ExactMatch(), FormatReward(GSM8K_PATTERN, tags=["answer"]),
                                                    quality_reward(keywords=["eggs"]), quality_reward()]
    for reward in rewards:
        check(timed(reward.explain, gold, pred))


@pytest.fixture(scope="module")
def math_reward():
    default_pool().start()   # the pool's start-up is not a call's time
    return get("math")


@FUZZ_SLOW
@given(st.sampled_from(GOLDS), predictions)
def test_math_reward_ends_in_a_breakdown_within_its_bound(math_reward, gold, pred):
    b = timed(math_reward.explain, gold, pred)
    check(b)
    event(f"path {b.details.get('path', 'none')}, {'error' if b.error else 'ok'}")
    for term in get("math=1,format=0.2").terms: assert term[0] in ("math", "format")


@FUZZ_SLOW
@given(st.lists(st.tuples(st.sampled_from(GOLDS), predictions), min_size=1, max_size=6))
def test_batches_end_in_one_breakdown_per_sample(math_reward, pairs):
    golds, preds = [g for g, _ in pairs], [p for _, p in pairs]
    for reward in (math_reward, get("format_then_correct")):
        start = time.perf_counter()
        out = reward.explain_batch(golds, preds)
        assert time.perf_counter() - start < BOUND * len(pairs)
        assert len(out) == len(pairs)
        for b in out: check(b)


spec_piece = st.sampled_from(list(REWARDS) + ["=", ",", "=1", "=0.2", "=-1", "=nan", "=1e999", " ", "", "x", "math", "1"])


@FUZZ
@given(st.lists(spec_piece, max_size=8).map("".join) | st.text(alphabet="mathformatcorectlsubnr_=,.0123456789- ", max_size=40))
def test_reward_specs_build_a_reward_or_say_why(spec):
    # (no ':' here: `module:callable` imports the module it names, and a fuzzer must not import arbitrary modules)
    try: reward = get(spec)
    except ValueError as e: assert str(e) and "\n" not in str(e)
    else: assert callable(reward.explain) and correctness_term(spec) in REWARDS


# ---------------------------------------------------------------- data files

answer_values = st.sampled_from(["18", "1,000", "#### 5", "1e5", "NaN", "Infinity", "1e999", "9" * 400, "", "x"]) | \
                st.integers(-10**500, 10**500) | st.floats() | st.booleans() | st.none() | short_text
rows = st.fixed_dictionaries({}, optional={"prompt": short_text | st.integers(), "question": short_text,
                                           "answer": answer_values}) | st.dictionaries(short_text, short_text, max_size=3)


def line_of(row) -> bytes:
    text = json.dumps(row, allow_nan=True)
    return text.encode("utf-8", errors="surrogatepass")


lines = st.lists(rows.map(line_of) | st.binary(max_size=80) | hostile_text.map(lambda t: t.encode("utf-8", "surrogatepass"))
                 | st.sampled_from([b"", b"  ", b"[1, 2]", b'{"prompt": "q", "answer": ' + b"1" * 5000 + b"}", b"{" * 5000]),
                 max_size=8)


@FUZZ
@given(lines)
def test_jsonl_loaders_end_in_data_or_a_dataset_error(tmp_path, data):
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(d.replace(b"\n", b" ") for d in data) + b"\n")
    for load in (load_jsonl_pairs, gsm8k.load_split):
        try: x, y = timed(load, path)
        except DatasetError as e:
            assert e.path == str(path) and str(e).startswith(str(path)) and "\n" not in str(e)
        else:
            assert len(x) == len(y) > 0 and all(math.isfinite(a.answer) for a in y)


@FUZZ
@given(rows)
def test_a_gsm8k_row_becomes_a_pair_or_a_dataset_error(row):
    try: question, answer = gsm8k.parse_row(row, "f.jsonl", 3)
    except DatasetError as e: assert (e.path, e.line) == ("f.jsonl", 3) and e.field in ("question", "answer")
    else: assert isinstance(question, MathQuestion) and math.isfinite(answer.answer)
