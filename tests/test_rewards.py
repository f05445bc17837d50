"Tests of lmtrain.rewards and lmtrain.metrics beyond the notebook cells: the issue's examples, time bounds, properties."
import asyncio
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from lmtrain.data_models import NumericalAnswer, NumericalAnswerWithThinking, ParseFailure
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
    b = mv.explain("0.5", "$\\frac{2}{4} \\cdot 1$")
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
