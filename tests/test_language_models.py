"""End-to-end tests of `lmtrain.language_models` over real HTTP on loopback.

The OpenAI-compatible server here is written independently of the library's own `FakeOpenAIServer`
(aiohttp, in the test's event loop), so the remote path is not only tested against itself.
"""
import asyncio
import json
import os
import time

import pytest
from aiohttp import web

from lmtrain.data_models import NumericalAnswer
from lmtrain.backends import Reply, RetryPolicy
from lmtrain.language_models import Completion, DiskCache, LanguageModel, Outcome, track_usage
from lmtrain.testing import FakeOpenAIServer, ServerReply

FAST_RETRY = RetryPolicy(max_retries=3, initial_delay_s=0.01, max_delay_s=0.05)


class ScriptedServer:
    """/v1/chat/completions whose behaviour is chosen by the model name; counts requests and peak concurrency."""

    def __init__(self):
        self.requests, self.by_model, self.in_flight, self.peak = [], {}, 0, 0

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        model = body["model"]
        self.requests.append(body)
        n = self.by_model[model] = self.by_model.get(model, 0) + 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self.reply(model, n, body)
        finally:
            self.in_flight -= 1

    @staticmethod
    def ok(content: str, finish_reason: str = "stop", refusal=None, model="m") -> web.Response:
        return web.json_response({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": content, "refusal": refusal}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}})

    @staticmethod
    def error(status: int, message: str, type_="invalid_request_error", code=None, headers=None) -> web.Response:
        return web.json_response({"error": {"message": message, "type": type_, "code": code}}, status=status,
                                 headers=headers)

    async def reply(self, model: str, n: int, body: dict) -> web.Response:
        if model in ("ok", "gpt-4o-mini"): return self.ok('{"answer": 42}')
        if model == "echo": return self.ok(json.dumps({"answer": len(body["messages"][-1]["content"])}))
        if model == "rate-limited-once":
            if n == 1: return self.error(429, "slow down", "rate_limit_exceeded", headers={"Retry-After": "0.6"})
            return self.ok('{"answer": 1}')
        if model == "rate-limited-always":
            return self.error(429, "slow down", "rate_limit_exceeded", headers={"Retry-After": "0.01"})
        if model == "flaky-500":
            return self.error(500, "boom", "server_error") if n <= 2 else self.ok('{"answer": 2}')
        if model == "always-500": return self.error(500, "boom", "server_error")
        if model == "slow":
            await asyncio.sleep(1.5)
            return self.ok('{"answer": 3}')
        if model == "delay-100ms":
            await asyncio.sleep(0.1)
            return self.ok('{"answer": 4}')
        if model == "bad-request": return self.error(400, "Unrecognized request argument supplied: foo")
        if model == "unauthorized": return self.error(401, "Incorrect API key provided", "invalid_api_key")
        if model == "forbidden": return self.error(403, "You are not allowed to use this model", "permission_error")
        if model == "not-found": return self.error(404, "The model does not exist", "not_found_error")
        if model == "too-long":
            return self.error(400, "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens.",
                              code="context_length_exceeded")
        if model == "content-policy":
            return self.error(400, "Your request was rejected by the content policy.", code="content_policy_violation")
        if model == "refuses": return self.ok("", refusal="I can't help with that.")
        if model == "cut-off": return self.ok('{"answer": ', finish_reason="length")
        if model == "prose": return self.ok("I think it is forty-two-ish")
        if model == "slow-to-read": return self.ok('{"answer": 7, "note": "SLOW"}')
        return self.error(404, f"unknown test model {model}", "not_found_error")


@pytest.fixture
async def server():
    scripted = ScriptedServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", scripted.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    scripted.api_base = f"http://127.0.0.1:{port}/v1"
    # warm litellm up (lazy imports on the first call) so that short timeouts below measure the server, not imports
    await LanguageModel("openai/ok", api_base=scripted.api_base, api_key="sk-test", timeout=30)("warm up")
    scripted.requests.clear(); scripted.by_model.clear(); scripted.peak = 0
    yield scripted
    await runner.cleanup()


def lm_for(server, name, **kwargs) -> LanguageModel:
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("timeout", 5)
    return LanguageModel(f"openai/{name}", api_base=server.api_base, api_key="sk-test", **kwargs)


def test_litellm_does_not_phone_home():
    import lmtrain.language_models  # noqa: F401  (sets the variable before litellm is imported)
    assert os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP") == "True"


async def test_ok_parses_and_records_usage_and_cost(server):
    lm = lm_for(server, "ok", cost_per_token=(1e-6, 2e-6))
    with track_usage() as run:
        c = await lm("What is 6 * 7?", NumericalAnswer)
    assert c.outcome == Outcome.OK and c.data == NumericalAnswer(answer=42) and c.error is None
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (11, 5)
    assert c.usage.cost == pytest.approx(11e-6 + 10e-6)
    assert run.calls == 1 and run.cost == pytest.approx(21e-6) and lm.usage.prompt_tokens == 11
    # no structured output for an unknown model: the schema went into the prompt
    sent = server.requests[-1]
    assert "response_format" not in sent and '"answer"' in sent["messages"][0]["content"]


async def test_unknown_price_is_recorded_as_unknown_not_zero(server):
    c = await lm_for(server, "ok")("q", NumericalAnswer)
    assert c.ok and c.usage.cost is None


async def test_structured_output_sends_the_schema(server):
    lm = lm_for(server, "ok", structured_output=True)
    c = await lm("What is 6 * 7?", NumericalAnswer)
    assert c.ok
    sent = server.requests[-1]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["answer"]["type"] == "number"
    assert sent["messages"] == [{"role": "user", "content": "What is 6 * 7?"}]


async def test_known_model_gets_structured_output_and_a_price(server):
    # litellm's bundled tables say gpt-4o-mini takes a JSON schema and what it costs; loopback serves it
    lm = LanguageModel("openai/gpt-4o-mini", api_base=server.api_base, api_key="sk-test", retry=FAST_RETRY)
    assert lm.uses_structured_output(NumericalAnswer)
    c = await lm("What is 6 * 7?", NumericalAnswer)
    assert c.ok and c.data.answer == 42
    assert server.requests[-1]["response_format"]["json_schema"]["name"] == "NumericalAnswer"
    assert c.usage.cost is not None and c.usage.cost > 0 and lm.usage.cost == c.usage.cost


async def test_429_waits_for_retry_after_then_succeeds(server):
    start = time.perf_counter()
    c = await lm_for(server, "rate-limited-once")("q", NumericalAnswer)
    elapsed = time.perf_counter() - start
    assert c.outcome == Outcome.OK and c.attempts == 2 and server.by_model["rate-limited-once"] == 2
    assert elapsed >= 0.6, f"Retry-After 0.6 s not honoured: retried after {elapsed:.2f} s"


async def test_429_forever_ends_as_api_error_after_max_retries(server):
    c = await lm_for(server, "rate-limited-always")("q")
    assert c.outcome == Outcome.API_ERROR and c.attempts == FAST_RETRY.max_retries + 1
    assert "429" in c.error and "RateLimitError" in c.error


async def test_500_is_retried(server):
    c = await lm_for(server, "flaky-500")("q", NumericalAnswer)
    assert c.ok and c.data.answer == 2 and c.attempts == 3
    c = await lm_for(server, "always-500")("q", NumericalAnswer)
    assert c.outcome == Outcome.API_ERROR and c.attempts == 4 and "500" in c.error and c.data is None


async def test_slow_reply_times_out(server):
    start = time.perf_counter()
    c = await lm_for(server, "slow", timeout=0.3, retry=RetryPolicy(max_retries=1, initial_delay_s=0.01))("q")
    assert c.outcome == Outcome.TIMEOUT and c.attempts == 2 and "0.3 s" in c.error
    assert time.perf_counter() - start < 1.4  # did not wait for the 1.5 s reply
    c = await lm_for(server, "slow", timeout=0.3, retry=RetryPolicy(retry_timeouts=False))("q")
    assert c.outcome == Outcome.TIMEOUT and c.attempts == 1


@pytest.mark.parametrize("name,status", [("bad-request", 400), ("unauthorized", 401), ("forbidden", 403),
                                         ("not-found", 404), ("too-long", 400)])
async def test_non_retryable_errors_stop_at_once(server, name, status):
    c = await lm_for(server, name)("q", NumericalAnswer)
    assert c.outcome == Outcome.API_ERROR and c.attempts == 1 and server.by_model[name] == 1
    assert str(status) in c.error


async def test_content_policy_and_refusals_are_refusals(server):
    c = await lm_for(server, "content-policy")("q")
    assert c.outcome == Outcome.REFUSAL and c.attempts == 1
    c = await lm_for(server, "refuses")("q", NumericalAnswer)
    assert c.outcome == Outcome.REFUSAL and "can't help" in c.error


async def test_cut_off_and_parse_failure_are_typed(server):
    c = await lm_for(server, "cut-off")("q", NumericalAnswer, max_tokens=3)
    assert c.outcome == Outcome.LENGTH and "max_tokens=3" in c.error
    c = await lm_for(server, "prose")("q", NumericalAnswer)
    assert c.outcome == Outcome.PARSE_FAILURE and c.error and c.text.startswith("I think")
    assert c.parse_failure is not None and not c.parse_failure


async def test_every_call_ends_in_a_completion(server):
    names = ["ok", "prose", "cut-off", "refuses", "bad-request", "always-500", "too-long", "content-policy"]
    lms = [lm_for(server, n, retry=RetryPolicy(max_retries=0)) for n in names]
    results = await asyncio.gather(*(lm("q", NumericalAnswer) for lm in lms))
    assert all(isinstance(c, Completion) for c in results)
    assert [c.outcome.value for c in results] == ["ok", "parse_failure", "length", "refusal", "api_error", "api_error",
                                                  "api_error", "refusal"]
    assert all(c.error for c in results if not c.ok)


async def test_a_reply_slow_to_read_holds_no_other_call(server, monkeypatch):
    """Issue 14: the parse ran on the event loop, outside the timeout; one slow reply held 8 concurrent calls.
    Here the parse of one reply blocks until a gate opens: the 7 others must end while it is blocked, and the
    slow call must end as a timeout of its own (its 3 s cover the request and the reading) before the gate opens."""
    import threading
    import lmtrain.language_models as language_models
    gate, reading, read = threading.Event(), threading.Event(), threading.Event()
    parse = language_models._parse
    def gated_parse(text, data_model):
        if "SLOW" in text: reading.set(); gate.wait(30); read.set()
        return parse(text, data_model)
    monkeypatch.setattr(language_models, "_parse", gated_parse)
    ended = []
    async def call(name, **kwargs):
        while name != "slow-to-read" and not reading.is_set(): await asyncio.sleep(0.01)   # once the slow reading began
        c = await lm_for(server, name, **kwargs)("q", NumericalAnswer)
        ended.append((name, reading.is_set(), read.is_set()))
        return c
    try:
        slow, *others = await asyncio.gather(call("slow-to-read", timeout=3, retry=RetryPolicy(max_retries=0)),
                                             *(call("ok") for _ in range(7)))
    finally: gate.set()
    assert all(c.ok and c.data.answer == 42 for c in others), (slow, others[0])
    assert len(ended) == 8 and all(began and not done for _, began, done in ended), (ended, slow)
    assert slow.outcome == Outcome.TIMEOUT and slow.attempts == 1 and "not read into NumericalAnswer" in slow.error
    assert "SLOW" in slow.text and slow.usage.completion_tokens == 5    # the reply came and was paid for: kept
    assert read.wait(30)


async def test_concurrency_is_bounded(server):
    lm = lm_for(server, "delay-100ms", max_concurrency=3)
    results = await lm.batch([f"question {i}" for i in range(12)], NumericalAnswer)
    assert all(c.ok for c in results)
    assert server.peak == 3, f"at most 3 requests in flight, saw {server.peak}"


async def test_disk_cache_is_keyed_by_the_full_request(server, tmp_path):
    lm = lm_for(server, "echo", cache=tmp_path / "cache")
    first = await lm("How long is this?", NumericalAnswer)
    again = await lm("How long is this?", NumericalAnswer)
    assert first.ok and again.cached and not first.cached and again.data == first.data
    assert server.by_model["echo"] == 1 and again.attempts == 0
    other = await lm("Another question", NumericalAnswer)
    assert not other.cached and server.by_model["echo"] == 2
    # temperature > 0: distinct sample indices are distinct entries; cache=False always asks
    await lm("How long is this?", NumericalAnswer, temperature=1.0, sample_index=0)
    await lm("How long is this?", NumericalAnswer, temperature=1.0, sample_index=1)
    await lm("How long is this?", NumericalAnswer, temperature=1.0, sample_index=1)
    assert server.by_model["echo"] == 4
    await lm("How long is this?", NumericalAnswer, cache=False)
    assert server.by_model["echo"] == 5
    assert len(DiskCache(tmp_path / "cache")) == 4
    # cache hits cost nothing and are counted as such
    assert lm.usage.cached_calls == 2 and lm.usage.calls == 7 and lm.usage.prompt_tokens == 5 * 11


async def test_errors_are_not_cached(server, tmp_path):
    lm = lm_for(server, "always-500", cache=tmp_path, retry=RetryPolicy(max_retries=0))
    assert (await lm("q")).outcome == Outcome.API_ERROR
    assert (await lm("q")).outcome == Outcome.API_ERROR and server.by_model["always-500"] == 2


async def test_library_fake_server_speaks_the_same_protocol():
    with FakeOpenAIServer(lambda body, seen: ServerReply(status=503) if seen == 1 else ServerReply('{"answer": 7}')) as srv:
        lm = LanguageModel("openai/fake", api_base=srv.api_base, api_key="k", retry=FAST_RETRY, timeout=30)
        c = await lm("q", NumericalAnswer)
    assert c.ok and c.data.answer == 7 and c.attempts == 2 and len(srv.requests) == 2


def test_bad_arguments_fail_loudly():
    lm = LanguageModel.from_function(lambda m: "x")
    with pytest.raises(TypeError, match="data_model"):
        asyncio.run(lm("q", data_model=dict))
    with pytest.raises(TypeError, match="messages"):
        asyncio.run(lm([{"content": "no role"}]))
    with pytest.raises(ValueError, match="max_concurrency"):
        LanguageModel("openai/x", max_concurrency=0)


def test_config_round_trip_keeps_no_secrets():
    lm = LanguageModel("openai/x", api_base="http://127.0.0.1:1/v1", api_key="sk-secret", temperature=0.3,
                       retry=RetryPolicy(max_retries=2), cost_per_token=(1.0, 2.0))
    config = json.loads(json.dumps(lm.get_config()))
    assert "sk-secret" not in json.dumps(config)
    assert config["withheld"] == ["api_key"]                      # named, not written: the caller passes it again
    again = LanguageModel.from_config(config)
    assert again.get_config() == {k: v for k, v in lm.get_config().items() if k != "withheld"} and again.retry.max_retries == 2


# --- the local backend (tiny random model: seconds, offline) -------------------------------------------------------

@pytest.fixture(scope="module")
def tiny():
    from lmtrain.testing import tiny_model
    return tiny_model()


async def test_local_calls_are_batched_and_match_sequential_ones(tiny):
    model, tokenizer = tiny
    lm = LanguageModel.from_transformers(model, tokenizer, max_tokens=8, temperature=1.0)
    prompts = [f"What is {i} + {2 * i}?" * (1 + i % 3) for i in range(8)]
    together = await asyncio.gather(*(lm(p, seed=i) for i, p in enumerate(prompts)))
    sizes = list(lm.backend.batcher.batch_sizes)
    alone = [await lm(p, seed=i) for i, p in enumerate(prompts)]
    assert sizes and max(sizes) >= 4, f"concurrent calls were not batched: {sizes}"
    assert [c.text for c in together] == [c.text for c in alone]  # per-row seeds: batching changes nothing
    assert all(c.outcome in (Outcome.OK, Outcome.LENGTH) for c in together)
    assert all(c.usage.cost == 0.0 and c.usage.prompt_tokens > 0 for c in together)


async def test_local_length_and_parse_failure_are_outcomes(tiny):
    model, tokenizer = tiny
    lm = LanguageModel.from_transformers(model, tokenizer, max_tokens=4)
    c = await lm("What is 2 + 2?", NumericalAnswer)
    assert c.outcome in (Outcome.LENGTH, Outcome.PARSE_FAILURE) and c.error and c.usage.completion_tokens <= 4


async def test_local_prompt_too_long_is_a_non_retryable_api_error(tiny):
    model, tokenizer = tiny
    lm = LanguageModel.from_transformers(model, tokenizer, max_tokens=4)
    c = await lm("word " * 5000)
    assert c.outcome == Outcome.API_ERROR and c.attempts == 1 and "context window" in c.error


async def test_fake_provider_timeout():
    lm = LanguageModel.from_function(lambda m: "late", latency_s=1.0, timeout=0.05, retry=RetryPolicy(max_retries=0))
    c = await lm("q")
    assert c.outcome == Outcome.TIMEOUT and c.attempts == 1


async def test_failing_backend_is_a_value_not_a_crash():
    def broken(messages): raise RuntimeError("backend bug")
    c = await LanguageModel.from_function(broken)("q")
    assert c.outcome == Outcome.API_ERROR and "backend bug" in c.error and c.attempts == 1


async def test_function_backend_reply_objects_pass_through():
    lm = LanguageModel.from_function(lambda m: Reply("", finish_reason="content_filter"))
    assert (await lm("q")).outcome == Outcome.REFUSAL


async def test_local_timeout_stops_the_row_instead_of_finishing_it(tiny):
    model, tokenizer = tiny
    lm = LanguageModel.from_transformers(model, tokenizer, max_tokens=1500, timeout=0.3)
    assert lm.retry.retry_timeouts is False  # a local timeout is not retried by default: it would redo the work
    await lm("warm up", max_tokens=1)
    c = await lm("Tell me a long story")
    assert c.outcome == Outcome.TIMEOUT and c.attempts == 1
    start = time.perf_counter()
    after = await lm("Hi", max_tokens=2, timeout=60)  # queued behind the abandoned row, which must stop early
    assert after.outcome in (Outcome.OK, Outcome.LENGTH) and time.perf_counter() - start < 5


def test_local_defaults_have_no_timeout_and_remote_ones_do():
    assert LanguageModel("local/does-not-exist-yet").timeout is None
    assert LanguageModel("openai/x").timeout == 60.0


async def test_missing_local_model_is_an_api_error_value():
    c = await LanguageModel("local//no/such/folder")("q")
    assert c.outcome == Outcome.API_ERROR and "no/such/folder" in c.error


NO_PHONE_HOME = r'''
import asyncio, socket, sys
attempts = []
real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
def getaddrinfo(host, *args, **kwargs):
    if host not in ("127.0.0.1", "localhost", "::1"): attempts.append(("dns", host))
    return real_getaddrinfo(host, *args, **kwargs)
def connect(self, address):
    if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1"): attempts.append(("connect", address))
    return real_connect(self, address)
socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
from lmtrain.language_models import LanguageModel
from lmtrain.testing import FakeOpenAIServer, ServerReply
from lmtrain.data_models import NumericalAnswer
async def main():
    with FakeOpenAIServer(lambda body, seen: ServerReply('{"answer": 1}')) as srv:
        for model in ("openai/gpt-4o-mini", "openai/unknown-model"):
            c = await LanguageModel(model, api_base=srv.api_base, api_key="k", timeout=30)("q", NumericalAnswer)
            assert c.ok, c.error
asyncio.run(main())
print("ATTEMPTS", attempts)
sys.exit(1 if attempts else 0)
'''


def test_no_network_outside_loopback():
    """Importing litellm through lmtrain and calling a loopback server makes no other DNS lookup or connection."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    out = subprocess.run([sys.executable, "-c", NO_PHONE_HOME], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


async def test_runs_side_by_side_count_their_own_calls():
    lm = LanguageModel.from_function(lambda m: "ok", latency_s=0.01)

    async def run(n):
        with track_usage() as totals:
            await asyncio.gather(*(lm(f"q{i}") for i in range(n)))
        return totals

    a, b = await asyncio.gather(run(3), run(5))
    assert (a.calls, b.calls, lm.usage.calls) == (3, 5, 8)
    with track_usage() as outer:
        with track_usage() as inner:
            await lm("nested")
    assert outer.calls == inner.calls == 1


async def test_retry_after_is_capped_by_max_wait():
    class Busy(Exception):
        status_code = 429
        litellm_response_headers = {"retry-after": "3600"}
    calls = []

    def busy_then_ok(messages):
        calls.append(time.perf_counter())
        if len(calls) == 1: raise Busy("come back in an hour")
        return "ok"
    lm = LanguageModel.from_function(busy_then_ok, retry=RetryPolicy(max_wait_s=0.2))
    c = await lm("q")
    assert c.ok and c.attempts == 2 and 0.19 <= calls[1] - calls[0] < 2
