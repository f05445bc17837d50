"Tests of lmtrain.rewards and lmtrain.metrics beyond the notebook cells: the issue's examples, time bounds, properties."
import asyncio
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lmtrain.data_models import NumericalAnswer, NumericalAnswerWithThinking
from lmtrain.parsing import ParseFailure
from lmtrain.metrics import Accuracy, MeanReward, ParseFailureRate, PassAtK, compute_metrics, pass_at_k
from lmtrain.rewards import (GSM8K_PATTERN, Breakdown, ExactMatch, FieldScore, FormatReward, FunctionReward,
                             KeywordCoverage, LengthReward, MathVerify, MathVerifyPool, StructureReward,
                             VocabularyDiversity, WeightedSum, fast_verdict, quality_reward, score_batch, to_trl)


@pytest.fixture(scope="module")
def pool():
    p = MathVerifyPool(size=2).start()
    yield p
    p.close()


@pytest.fixture(scope="module")
def mv(pool):
    return MathVerify(pool=pool)


@pytest.mark.parametrize("gold,pred", [("18", "#### 18"), ("18", "The answer is $18."), ("18", "\\boxed{18}"),
                                       ("18", "18.0"), ("0.5", "\\frac{1}{2}"), ("1000", "The answer is $1,000."),
                                       ("18", [{"role": "assistant", "content": "<answer>18</answer>"}])])
def test_math_verify_issue_examples(mv, gold, pred):
    b = mv.explain(gold, pred)
    assert b.total == 1.0 and b.error is None, b


@pytest.mark.parametrize("gold,pred", [("18", "#### 19"), ("0.5", "\\frac{1}{3}"), ("18", "I do not know"), ("18", "")])
def test_math_verify_wrong(mv, gold, pred):
    assert mv(gold, pred) == 0.0


def test_fast_path_only_decides_when_sure():
    assert fast_verdict("18", "18.000") == 1.0 and fast_verdict("18", "17") == 0.0
    assert fast_verdict("0.333333", "0.3333333") is None   # math-verify rounds to 6 places: let it decide
    assert fast_verdict("18", "18 apples") is None


def _direct(gold, pred):
    from math_verify import parse, verify
    return float(verify(parse(gold), parse(pred)))


def test_agrees_with_math_verify_on_gsm8k_style_pairs(mv):
    rng = random.Random(1)
    for _ in range(60):
        n = rng.randint(0, 5000)
        pred = rng.choice([f"#### {n}", f"The answer is {n}.", f"\\boxed{{{n}}}", f"{n}.0", f"#### {n + 1}", f"{n}/2"])
        assert mv(str(n), pred) == _direct(str(n), pred), (n, pred)


ADVERSARIAL = ["9^9^9^9^9", "$9^{9^{9^{9^{9}}}}$", "1 " * 50_000, "x" * 100_000, "(" * 5000 + "1" + ")" * 5000]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=["tower", "latex-tower", "100k-ones", "100k-x", "parens"])
def test_adversarial_input_bounded_on_main_thread(mv, text):
    start = time.perf_counter()
    b = mv.explain("18", text)
    assert time.perf_counter() - start < 1.6 and b.total == 0.0, b


def test_adversarial_input_bounded_from_threads(mv):
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as ex:
        out = list(ex.map(lambda p: mv.explain("18", p), ["9^9^9^9^9", "#### 18"]))
    assert time.perf_counter() - start < 1.6
    assert out[0].total == 0.0 and "TimeoutError" in out[0].error and out[1].total == 1.0


def test_adversarial_input_bounded_from_asyncio(mv):
    async def main():
        return await asyncio.gather(mv.aexplain("18", "9^9^9^9^9"), mv.aexplain("0.5", "$\\frac{1}{2}$"))
    start = time.perf_counter()
    bad, good = asyncio.run(main())
    assert time.perf_counter() - start < 1.6 and bad.total == 0.0 and good.total == 1.0


def test_pool_recovers_after_kills(pool, mv):
    before = pool.stats["restarts"]
    for _ in range(3):
        assert mv("18", "9^9^9^9^9") == 0.0
        start = time.perf_counter()
        assert mv("0.5", "\\frac{1}{2}") == 1.0
        assert time.perf_counter() - start < 0.5  # a fresh worker is forked, not started from scratch
    assert pool.stats["restarts"] >= before + 3


def test_exact_match_seed_usage():
    em = ExactMatch(in_mask=["answer"])
    gold = NumericalAnswerWithThinking(thinking="a", answer=18)
    assert em(gold, NumericalAnswerWithThinking(thinking="b", answer=18.0)) == 1.0
    assert em(gold, "steps\n#### 18") == 1.0 and em(gold, {"thinking": "c", "answer": 17}) == 0.0
    b = em.explain(gold, "no answer")
    assert b.total == 0.0 and "did not parse" in b.error


def test_parse_failure_scores_zero_with_record():
    b = ExactMatch().explain(NumericalAnswer(answer=1), ParseFailure("NumericalAnswer", "x", "no JSON object found"))
    assert b.total == 0.0 and "no JSON object found" in b.error


def test_score_batch_isolates_failures(mv):
    def flaky(t, p):
        if p == "boom": raise RuntimeError("bad sample")
        return 1.0
    out = score_batch(WeightedSum([(FunctionReward(flaky, name="flaky"), 1), (mv, 1)]), ["18"] * 3, ["18", "boom", "19"])
    assert [b.total for b in out] == [1.0, 0.0, 0.5]  # "boom": the flaky term fails (0), math-verify says 0
    assert "bad sample" in out[1].error and out[0].error is None and out[2].error is None


def test_weighted_sum_seed_numbers():
    terms = {FunctionReward(lambda t, p, v=v: v, name=n): w
             for n, v, w in [("length", 0.73, 0.3), ("vocabulary", 0.91, 0.3), ("structure", 0.8, 0.2), ("quality", 0.54, 0.2)]}
    b = WeightedSum(terms).explain(None, "x")
    assert abs(b.total - 0.76) < 1e-12 and list(b.parts) == ["length", "vocabulary", "structure", "quality"]


def test_quality_terms_by_hand():
    assert LengthReward(target=20)(None, "w " * 15) == 0.75
    assert VocabularyDiversity()(None, "a b a b") == 0.5
    assert StructureReward()(None, "One. Two.") == 1.0 and StructureReward()(None, "one two") == 0.25
    assert KeywordCoverage(["alpha", "beta"])(None, "Alpha only") == 0.5
    assert FieldScore("quality")(None, {"quality": 0.3}) == 0.3
    text = "Neural networks learn weights. Training adjusts them with gradients."
    b = quality_reward(target_words=9, keywords=["neural", "gradient", "loss"]).explain(None, text)
    assert b.parts == {"length": 1.0, "vocabulary": 1.0, "structure": 1.0, "quality": 2 / 3}
    assert abs(b.total - (0.8 + 0.2 * 2 / 3)) < 1e-12


def test_format_reward():
    assert FormatReward(GSM8K_PATTERN)(None, "so 18\n#### 18") == 1.0
    assert FormatReward(GSM8K_PATTERN)(None, "#### 18 dollars") == 0.0
    assert FormatReward(tags=["think", "answer"]).explain(None, "<think></think>").parts == {"<think>": 1.0, "<answer>": 0.0}


def test_to_trl(mv):
    fn = to_trl(mv)
    assert fn.__name__ == "math_verify"
    assert fn(["q"] * 2, ["#### 18", [{"role": "assistant", "content": "\\boxed{3}"}]], answer=["18", "4"]) == [1.0, 0.0]
    fn = to_trl(ExactMatch(in_mask=["answer"]), output_model=NumericalAnswer)
    assert fn(["q"], ["#### 7"], answer=["7"]) == [1.0] and fn.last_breakdowns[0].error is None


def test_metrics_by_hand(mv):
    assert abs(pass_at_k(5, 2, 1) - 0.4) < 1e-12 and abs(pass_at_k(5, 2, 2) - 0.7) < 1e-12
    p = PassAtK(2, mv)
    p.update("18", ["#### 18", "#### 1", "#### 2", "#### 3"])
    assert abs(p.result() - 0.5) < 1e-12
    got = compute_metrics([MeanReward(mv), Accuracy(mv), ParseFailureRate(NumericalAnswer)], ["1", "2"], ["#### 1", "nope"])
    assert got == {"mean_math_verify": 0.5, "accuracy": 0.5, "parse_failure_rate": 0.5}
    m = Accuracy(mv)
    assert math.isnan(m.result())
    m.update("1", "1"); m.reset()
    assert m.count == 0


TEXT_REWARDS = [ExactMatch(in_mask=["answer"]), FormatReward(GSM8K_PATTERN, tags=["answer"]), LengthReward(10),
                VocabularyDiversity(window=3), StructureReward(), KeywordCoverage(["a"]), FieldScore("quality"),
                quality_reward(keywords=["x"])]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_any_text_never_raises_and_stays_in_range(text):
    gold = NumericalAnswerWithThinking(thinking="t", answer=3)
    for reward in TEXT_REWARDS:
        b = reward.explain(gold, text)
        assert isinstance(b, Breakdown) and 0.0 <= b.total <= 1.0, (reward, b)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="0123456789^+-*/{}()\\frac$.,# ", max_size=60))
def test_math_verify_any_math_like_text_is_bounded(mv, text):
    start = time.perf_counter()
    b = mv.explain("18", text)
    assert 0.0 <= b.total <= 1.0 and time.perf_counter() - start < 1.6


def test_forked_child_gets_its_own_workers_and_spares_the_parents(mv):
    import os
    assert mv("0.5", "\\frac{1}{3}") == 0.0  # the parent's pool is running
    pid = os.fork()
    if pid == 0:  # child: a data-loader style fork; it must be able to score, and must not kill the parent's workers
        ok = mv("0.5", "$\\frac{2}{4}$") == 1.0 and mv("0.5", "\\sqrt{2}") == 0.0
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert mv("0.5", "\\frac{3}{6}+0") == 1.0  # the parent's workers still answer


def test_worker_dying_while_idle_costs_no_score(pool, mv):
    import os, signal
    assert mv("0.5", "\\frac{1}{4}") == 0.0
    for w in list(pool._all): os.kill(w.pid, signal.SIGKILL)  # e.g. the OOM killer
    time.sleep(0.2)
    b = mv.explain("0.5", "$y = \\frac{2}{4}$")
    assert b.total == 1.0 and b.error is None, b


def test_metrics_reuse_a_training_loops_scores():
    from types import SimpleNamespace as R
    results = [R(y_true="1", y_pred="#### 1", reward=1.0, outcome="ok"),
               R(y_true="1", y_pred=ParseFailure("NumericalAnswer", "?", "no JSON"), reward=0.0, outcome="parse_failure"),
               R(y_true="1", y_pred=None, reward=0.0, outcome="timeout"),
               R(y_true="1", y_pred="so 1", reward=0.5, outcome="ok")]
    assert MeanReward().from_results(results) == 0.375 and MeanReward().name == "mean_reward"
    assert Accuracy().from_results(results) == 0.25
    assert ParseFailureRate(NumericalAnswer).from_results(results) == 0.25  # the loop's outcome is trusted
    assert ParseFailureRate(NumericalAnswer).update_batch(None, ["so 1", "#### 1"]) is None
    m = ParseFailureRate(NumericalAnswer)
    m.update_batch(None, [r.y_pred for r in results if r.y_pred is not None])  # no outcomes: it checks itself
    assert m.result() == 2 / 3                                                # the ParseFailure and "so 1"


# ---------------------------------------------------------------- the bound counts the queue (issue 14)

def test_math_verify_bound_includes_the_wait_for_a_worker(mv):
    # 8 callers, 2 workers, all hostile: before, the last calls waited for 3 rounds of kills (4 s here, 14 s in the issue)
    def one(text):
        start = time.perf_counter()
        b = mv.explain("18", text)
        return time.perf_counter() - start, b
    with ThreadPoolExecutor(max_workers=8) as ex:
        out = list(ex.map(one, ["9^9^9^9^9"] * 8))
    assert max(s for s, _ in out) < 1.6, [round(s, 2) for s, _ in out]
    assert all(b.total == 0.0 and b.error.startswith("math_verify: TimeoutError") for _, b in out)
    assert sum("no math-verify worker was free" in b.error for _, b in out) >= 2
    assert mv("0.5", "\\frac{1}{2}") == 1.0


def test_math_verify_under_eight_threads_of_ordinary_replies(mv):
    texts = ["$\\sqrt{324}$", "$2 \\cdot 9 = 18$", "18.0 \\text{ dollars}", "$x = 18$"] * 2
    with ThreadPoolExecutor(max_workers=8) as ex:
        out = list(ex.map(lambda t: mv.explain("18", t), texts))
    assert all(b.total == 1.0 and b.error is None for b in out), out


@pytest.mark.parametrize("gold,pred", [("100000", "#### 1e5"), ("602000000000000000000000", "\\boxed{6.02e23}"),
                                       ("0.00015", "The answer is 1.5e-4.")])
def test_math_verify_reads_scientific_notation(pool, gold, pred):
    assert MathVerify(pool=pool)(gold, pred) == 1.0 and MathVerify(pool=pool, fast_path=False)(gold, pred) == 1.0


# ---------------------------------------------------------------- rewards by name (issue 13)

from lmtrain import rewards as R
from lmtrain.metrics import default_metric, get as get_metric
from lmtrain.rewards import (HashAnswerCorrect, HashAnswerFormat, LastNumberCorrect, TRLFunction, correctness_term,
                             format_then_correct, get)


@pytest.mark.parametrize("name,cls", [("math", MathVerify), ("exact", ExactMatch), ("format", HashAnswerFormat),
                                      ("correct", HashAnswerCorrect), ("last_number", LastNumberCorrect),
                                      ("format_then_correct", WeightedSum)])
def test_every_registered_name_builds_its_reward(name, cls):
    reward = get(name)
    assert isinstance(reward, cls) and reward is not get(name)   # a fresh instance each time
    assert reward.name == {"math": "math", "exact": "exact", "format_then_correct": "format_then_correct"}.get(name, reward.name)


@pytest.mark.parametrize("reply,expected", [
    ("12 + 7 = 19\n#### 19", {"math": 1, "exact": 1, "format": 1, "correct": 1, "last_number": 1, "format_then_correct": 1}),
    ("12 + 7 = 19", {"math": 1, "exact": 0, "format": 0, "correct": 0, "last_number": 1, "format_then_correct": 0.25}),
    ("#### 20", {"math": 0, "exact": 0, "format": 1, "correct": 0, "last_number": 0, "format_then_correct": 0.25}),
    ("#### 25#### 14#### 19", {"exact": 0, "format": 0, "correct": 1, "last_number": 1, "format_then_correct": 0.25}),
    ("#### 1.9e1", {"math": 1, "exact": 1, "format": 1, "correct": 1, "last_number": 1, "format_then_correct": 1}),
])
def test_named_rewards_by_hand(reply, expected):
    gold = NumericalAnswer(answer=19)
    assert {name: get(name)(gold, reply) for name in expected} == expected


def test_weighted_spec():
    b = get("math=1,format=0.2").explain(NumericalAnswer(answer=18), "The answer is \\boxed{18}.")
    assert abs(b.total - 1 / 1.2) < 1e-12 and b.parts == {"math": 1.0, "format": 0.0}
    assert get("math,format")(NumericalAnswer(answer=18), "so 18") == 0.5     # no weights: equal ones
    assert R.parse_spec(" math = 1 , format=0.2 ") == [("math", 1.0), ("format", 0.2)]


@pytest.mark.parametrize("spec,says", [("bogus", "unknown reward 'bogus': expected one of math, exact, format, correct, "
                                                  "last_number, format_then_correct"),
                                       ("math=1,bogus=2", "unknown reward 'bogus'"), ("math=-1", ">= 0"), ("math=nan", ">= 0"),
                                       ("math=x", "must be a number"), ("math,,format", "empty term"), ("", "empty term"),
                                       ("no_such_module_xyz:f", "cannot import"), ("json:no_such_attr", "has no 'no_such_attr'"),
                                       ("json:__doc__", "expected a Reward or a function"), (":f", "expected 'module:callable'")])
def test_unknown_or_malformed_specs_are_clear_value_errors(spec, says):
    with pytest.raises(ValueError) as info: get(spec)
    assert says in str(info.value) and "\n" not in str(info.value)


USER_MODULE = '''
from lmtrain.rewards import Reward
def trl_style(completions, answer, **kwargs):
    return [float(c.strip().endswith(str(a))) for c, a in zip(completions, answer)]
def trl_prompts_first(prompts, completions, **kwargs):
    return [0.5 for _ in completions]
def pair(y_true, y_pred):
    return float("yes" in y_pred)
def one_argument(x):
    return 1.0
def wrong_length(completions, **kwargs):
    return [1.0]
class Yes(Reward):
    name = "yes"
    def compute(self, y_true, y_pred): return float("yes" in y_pred)
yes = Yes(name="yes_instance")
class NeedsArgs(Reward):
    def __init__(self, x): super().__init__()
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "lmtrain_user_rewards.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "lmtrain_user_rewards"


def test_user_rewards_every_form(user_module):
    gold = NumericalAnswer(answer=18)
    trl = get(f"{user_module}:trl_style")
    assert isinstance(trl, TRLFunction) and trl.name == "trl_style" and trl(gold, "so 18") == 1.0 and trl(gold, "so 7") == 0.0
    assert [b.total for b in score_batch(trl, [gold] * 3, ["18", "no", "x 18"])] == [1.0, 0.0, 1.0]
    assert get(f"{user_module}:trl_prompts_first")(gold, "x") == 0.5
    assert isinstance(get(f"{user_module}:pair"), FunctionReward) and get(f"{user_module}:pair")(gold, "yes") == 1.0
    assert get(f"{user_module}:Yes").name == "yes" and get(f"{user_module}:Yes")(gold, "yes!") == 1.0
    assert get(f"{user_module}:yes").name == "yes_instance"
    b = get(f"{user_module}:trl_style=1,format=1").explain(gold, "#### 18")
    assert b.total == 1.0 and b.parts == {"trl_style": 1.0, "format": 1.0}
    assert "expected a list of 2 numbers" in score_batch(get(f"{user_module}:wrong_length"), [gold] * 2, ["a", "b"])[0].error
    for name, says in [("one_argument", "expected a TRL function"), ("NeedsArgs", "cannot be built without arguments")]:
        with pytest.raises(ValueError, match=says): get(f"{user_module}:{name}")


def test_user_rewards_through_to_trl_and_back(user_module):
    fn = R.to_trl(get(f"{user_module}:trl_style"))
    assert fn(prompts=["q", "q"], completions=["so 5", "so 6"], answer=["5", "5"]) == [1.0, 0.0]


@pytest.mark.parametrize("spec,metric", [("math", "math"), ("exact", "exact"), ("format", "correct"), ("correct", "correct"),
                                         ("last_number", "last_number"), ("format_then_correct", "correct"),
                                         ("math=1,format=0.2", "math"), ("format=1,last_number=0.5", "last_number"),
                                         ("format=1", "correct"), ("exact=1,math=1", "exact"), ("format_then_correct=1,math=0.5", "correct"),
                                         ("mod:fn", "mod:fn"), ("format=2,mod:fn=1", "mod:fn")])
def test_correctness_term_rule(spec, metric):
    assert correctness_term(spec) == metric


def test_metrics_by_name(user_module):
    m = default_metric("format_then_correct")
    assert m.name == "correct" and isinstance(m.reward, HashAnswerCorrect)
    got = get_metric(f"{user_module}:pair")
    got.update_batch([None, None], ["yes", "no"])
    assert got.result() == 0.5 and got.name == f"{user_module}:pair"
    with pytest.raises(ValueError, match="unknown reward"): get_metric("bogus")


def test_answer_rewards_read_numbers_with_the_one_grammar():
    gold = NumericalAnswer(answer=1000)
    assert HashAnswerCorrect()(gold, "#### 1,000") == 1.0 and HashAnswerCorrect()(gold, "#### 1e3") == 1.0
    assert HashAnswerCorrect()(NumericalAnswer(answer=19), "#### 1,9") == 0.0   # not a number: groups of three
    b = HashAnswerCorrect().explain({"answer": "9" * 400}, "#### 9")
    assert b.total == 0.0 and "float range" in b.error
    assert format_then_correct()(NumericalAnswer(answer=19), "12 + 7 = 19\n#### 19\nHope this helps!") == 0.75


def test_hash_answer_format_is_linear_on_trailing_whitespace():
    start = time.perf_counter()
    assert HashAnswerFormat()(None, "#### 1" + " " * 100_000 + "x") == 0.0   # `\s*\.?\s*` here was quadratic
    assert time.perf_counter() - start < 1.0


def test_old_import_locations_still_work():
    import importlib
    for name in ["MathVerify", "MathVerifyPool", "default_pool", "fast_verdict", "GSM8K_PATTERN", "FormatReward", "has_tag",
                 "words", "sentences", "LengthReward", "VocabularyDiversity", "StructureReward", "KeywordCoverage",
                 "FieldScore", "quality_reward", "Breakdown", "Reward", "FunctionReward", "as_reward", "as_text", "as_model",
                 "as_answer", "format_number", "ExactMatch", "WeightedSum", "score_batch", "to_trl", "failure"]:
        assert getattr(importlib.import_module("lmtrain.rewards"), name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'nope'"): R.nope
