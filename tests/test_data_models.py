"""Property tests for `lmtrain.data_models` and its parser (`lmtrain.parsing`): the parser never raises, and data round-trips through JSON.

The notebook runs a few examples of each property; these run many more, on generated models too.
"""
import json
import time
from typing import Optional

import pytest
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st
from pydantic import BaseModel, Field, create_model

from lmtrain.data_models import DataModel, MathQuestion, NumericalAnswer, NumericalAnswerWithThinking, matches
from lmtrain.parsing import ParseFailure, extract_answer, parse_number, parse_output

GSM8K_MODELS = (MathQuestion, NumericalAnswerWithThinking, NumericalAnswer)
SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------- strategies

# Fragments LMs (and adversaries) write: structure, answer markers, numbers, quotes, escapes.
FRAGMENTS = ['{', '}', '[', ']', '"', "'", ':', ',', ',}', '\\', '\\"', '```', '```json\n', '\n', ' ',
             '####', '#### 18', '\\boxed{', '\\frac{1}{2}', '<answer>', '</answer>', '<think>', '</think>',
             'The answer is', 'Answer:', '$1,000', '18', '-3.5', '1e999', 'NaN', 'Infinity', 'True', 'None',
             '"answer"', '"thinking"', '"question"', "'answer'", 'answer', 'thinking', '// c', '\x00', '\u2212',
             '\ud7ff', 'é', '😀']
lm_like_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=8), max_size=60).map("".join)
any_text = st.text(max_size=400) | lm_like_text | st.binary(max_size=200).map(lambda b: b.decode("latin-1"))

finite = st.floats(allow_nan=False, allow_infinity=False)
names = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(
    lambda n: not n.startswith("model") and not hasattr(DataModel, n))

LEAF_TYPES = {  # annotation -> strategy for its values
    str: st.text(max_size=40),
    int: st.integers(-10**12, 10**12),
    float: finite,
    bool: st.booleans(),
    list[int]: st.lists(st.integers(-1000, 1000), max_size=4),
    list[str]: st.lists(st.text(max_size=10), max_size=4),
    Optional[float]: st.none() | finite,
}


@st.composite
def model_and_values(draw, depth: int = 0):
    "A generated DataModel class and a strategy-drawn value of it (nested models one level deep)."
    field_names = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    spec, values = {}, {}
    for name in field_names:
        if depth == 0 and draw(st.integers(0, 5)) == 0:
            sub, sub_value = draw(model_and_values(depth=1))
            spec[name], values[name] = (sub, Field(description=f"nested {name}")), sub_value
        else:
            annotation = draw(st.sampled_from(list(LEAF_TYPES)))
            spec[name] = (annotation, Field(description=f"the {name}"))
            values[name] = draw(LEAF_TYPES[annotation])
    cls = create_model(f"Generated{depth}", __base__=DataModel, **spec)
    return cls, cls(**values)


WRAPPERS = ["{}", "```json\n{}\n```", "Sure! Here is the JSON:\n{}\nHope this helps.", "  {}  ", "{}\n\n#### 7",
            "Thinking... {{not json}} then: {}"]

# ---------------------------------------------------------------- never raises


@settings(max_examples=1500, **SETTINGS)
@given(any_text)
def test_arbitrary_text_never_raises(text):
    for model in GSM8K_MODELS:
        out = parse_output(text, model)
        assert isinstance(out, (model, ParseFailure))
        if isinstance(out, ParseFailure):
            assert not out and out.message and out.expected
    answer = extract_answer(text)
    assert answer is None or isinstance(answer, str)
    number = parse_number(text)
    assert number is None or isinstance(number, float)


@settings(max_examples=200, **SETTINGS)
@given(model_and_values(), any_text)
def test_arbitrary_text_never_raises_on_generated_models(model_value, text):
    model, _ = model_value
    assert isinstance(parse_output(text, model), (model, ParseFailure))


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000, "{" * 150_000, '{"a":' * 30_000, "{}" * 90_000, "<answer>" * 20_000,
    "$" * 150_000 + "x", "{" + "it's " * 30_000, "{" + '"a' * 80_000, "```json\n" * 20_000, "\\boxed{" * 25_000,
    "the answer is " * 12_000, "1" * 150_000, '{"answer": ' + "9" * 100_000 + "}", "{" + "\\" * 150_000,
    "<think>" * 25_000 + "#### 5", ("{'a': \"b\\\", } ]  True, x: ' #### \\boxed{ <answer> " * 4000),
])
def test_adversarial_inputs_fail_fast(text):
    # Bounded, not benchmarked: a quadratic step would take minutes on these ~150 kB inputs.
    start = time.perf_counter()
    for model in GSM8K_MODELS:
        assert isinstance(parse_output(text, model), (model, ParseFailure))
    assert time.perf_counter() - start < 10


def test_non_text_inputs_are_failures_not_errors():
    for bad in (None, 3, object(), ["a"], b"\xff\xfe#### 4"):
        assert isinstance(parse_output(bad, NumericalAnswer), (NumericalAnswer, ParseFailure))
    assert parse_output(b"#### 4", NumericalAnswer).answer == 4
    assert not parse_output("#### 4", "not a model")  # even a wrong model argument is a value


def test_never_evaluates_text(tmp_path):
    marker = tmp_path / "pwned"
    payloads = [f"__import__('pathlib').Path({str(marker)!r}).touch()",
                f"{{'answer': __import__('pathlib').Path({str(marker)!r}).touch()}}",
                f"#### __import__('pathlib').Path({str(marker)!r}).touch()"]
    for text in payloads:
        assert not parse_output(text, NumericalAnswer)
    assert not marker.exists()


# ---------------------------------------------------------------- round trips


@settings(max_examples=400, **SETTINGS)
@given(st.text(max_size=300), finite, st.text(max_size=300), st.sampled_from(WRAPPERS))
def test_gsm8k_models_round_trip(thinking, answer, question, wrapper):
    for value in (NumericalAnswerWithThinking(thinking=thinking, answer=answer), NumericalAnswer(answer=answer),
                  MathQuestion(question=question)):
        text = wrapper.replace("{}", value.model_dump_json(), 1)
        assert parse_output(text, type(value)) == value
        assert parse_output(value.prettify_json(), type(value)) == value


@settings(max_examples=300, **SETTINGS)
@given(model_and_values(), st.sampled_from(WRAPPERS))
def test_generated_models_round_trip(model_value, wrapper):
    model, value = model_value
    text = wrapper.replace("{}", value.model_dump_json(), 1)
    parsed = parse_output(text, model)
    assert parsed == value, (text, parsed)


def _earlier_marker(text):
    "Whether `text` holds a marker that the parser reads before '####' (a box, an answer tag); plain text, not the parser's own reading."
    return "\\boxed{" in text or "<answer" in text.lower()


@settings(max_examples=300, **SETTINGS)
@given(st.text(max_size=200).filter(lambda t: "####" not in t and not _earlier_marker(t)), st.integers(-10**9, 10**9))
@example("\\boxed{}", 0)   # found by a random run: the empty box was read as the answer, hiding '#### 0'
def test_plain_gsm8k_answer_round_trip(thinking, answer):
    # '#### N' is the GSM8K format: the text before it is the thinking, N (with thousands commas) the answer.
    # Thinking that holds a marker read before '####' ('\\boxed{0}', '<answer>..') is answered by that marker.
    parsed = parse_output(f"{thinking}\n#### {answer:,}", NumericalAnswerWithThinking)
    assert parsed and parsed.answer == answer and parsed.thinking == thinking.strip()


@settings(max_examples=200, **SETTINGS)
@given(st.integers(-10**9, 10**9) | finite.filter(lambda x: abs(x) < 1e15).map(lambda x: round(x, 4)))
def test_plain_answer_formats(number):
    shown = f"{number:,}" if isinstance(number, int) else repr(number)
    for text in (f"#### {shown}", f"\\boxed{{{shown}}}", f"<answer>{shown}</answer>", f"The answer is ${shown}.",
                 f"Final answer: {shown}"):
        parsed = parse_output(text, NumericalAnswer)
        assert parsed and parsed.answer == pytest.approx(float(number)), (text, parsed)


# ---------------------------------------------------------------- masks, concatenation, comparison


def _nested_field_names(model) -> set:
    return {sub for info in model.model_fields.values() if isinstance(info.annotation, type)
            and issubclass(info.annotation, BaseModel) for sub in info.annotation.model_fields}


@settings(max_examples=200, **SETTINGS)
@given(model_and_values(), st.data())
def test_masks_split_the_fields(model_value, data):
    model, value = model_value
    fields = list(model.model_fields)
    chosen = data.draw(st.lists(st.sampled_from(fields), unique=True))
    # A bare name also matches inside nested models (tested in test_nested_masks); keep this one top-level.
    assume(not set(chosen) & _nested_field_names(model))
    kept, dropped = value.in_mask(chosen), value.out_mask(chosen)
    assert list(type(kept).model_fields) == [f for f in fields if f in chosen]
    assert list(type(dropped).model_fields) == [f for f in fields if f not in chosen]
    assert type(kept) is model.in_mask_model(chosen) and type(dropped) is model.out_mask_model(chosen)
    assert {**kept.model_dump(), **dropped.model_dump()} == value.model_dump()
    assert set(kept.get_schema().get("properties", {})) == set(chosen)


@settings(max_examples=200, **SETTINGS)
@given(model_and_values(), model_and_values())
def test_concatenation_keeps_every_field(a_value, b_value):
    (a_cls, a), (b_cls, b) = a_value, b_value
    both = a + b
    assert type(both) is a_cls + b_cls
    assert len(type(both).model_fields) == len(a_cls.model_fields) + len(b_cls.model_fields)
    dumped = both.model_dump()
    assert list(dumped)[:len(a_cls.model_fields)] == list(a_cls.model_fields)
    assert sorted(map(repr, dumped.values())) == sorted(map(repr, [*a.model_dump().values(), *b.model_dump().values()]))
    assert parse_output(both.model_dump_json(), type(both)) == both


def test_concatenation_clash_suffixes():
    value = NumericalAnswerWithThinking(thinking="t", answer=1) + NumericalAnswer(answer=2)
    assert value.model_dump() == {"thinking": "t", "answer": 1.0, "answer_1": 2.0}
    three = NumericalAnswer + NumericalAnswer + NumericalAnswer
    assert list(three.model_fields) == ["answer", "answer_1", "answer_2"]
    assert (MathQuestion + NumericalAnswer).model_fields["answer"].description


def test_nested_masks():
    class Inner(DataModel):
        answer: float
        note: str = "n"

    class Outer(DataModel):
        question: str
        inner: Inner
        inners: list[Inner] = []
        maybe: Optional[Inner] = None

    value = Outer(question="q", inner=Inner(answer=1), inners=[Inner(answer=2)], maybe=Inner(answer=3, note="m"))
    assert value.in_mask("inner.answer").model_dump() == {"inner": {"answer": 1.0}}
    assert value.in_mask("answer").model_dump() == {"inner": {"answer": 1.0}, "inners": [{"answer": 2.0}],
                                                    "maybe": {"answer": 3.0}}
    assert value.out_mask("note").model_dump() == {"question": "q", "inner": {"answer": 1.0},
                                                   "inners": [{"answer": 2.0}], "maybe": {"answer": 3.0}}
    assert value.out_mask(["inner"]).model_dump()["maybe"] == {"answer": 3.0, "note": "m"}
    assert Outer.out_mask_model("note").model_fields["maybe"].default is None


def test_comparison_for_rewards():
    a = NumericalAnswerWithThinking(thinking="a", answer=18)
    assert a == NumericalAnswerWithThinking(thinking="a", answer=18 + 1e-12)
    assert a != NumericalAnswerWithThinking(thinking="a", answer=18.001)
    assert a != NumericalAnswerWithThinking(thinking="b", answer=18)
    assert matches(a, NumericalAnswerWithThinking(thinking="b", answer=18.0), in_mask=["answer"])
    assert matches(a, NumericalAnswerWithThinking(thinking="b", answer=18.0), out_mask=["thinking"])
    assert matches(a, NumericalAnswerWithThinking(thinking="a", answer=18.1), rel_tol=0.01)
    assert a.in_mask(["answer"]) == NumericalAnswer(answer=18)


def test_parse_failure_names_field_and_excerpt():
    failure = parse_output('{"thinking": "x", "answer": "lots"}', NumericalAnswerWithThinking)
    assert isinstance(failure, ParseFailure) and not failure
    assert failure.field == "answer" and "answer" in failure.message and "lots" in failure.got
    assert "NumericalAnswerWithThinking" in failure.expected
    long_failure = parse_output("blah " * 10_000, NumericalAnswer)
    assert len(long_failure.got) < 400 and "no JSON object" in long_failure.message
    assert json.dumps(long_failure.to_dict())
