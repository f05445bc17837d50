"""`ServerSampler` over real HTTP on loopback, against a fake OpenAI-compatible `/v1/completions` server whose
completions and per-token log-probs come from a tiny random model (a plain sampling loop, nothing shared with
`Policy.sample`). Seconds, offline."""
import http.server, json, socket, threading, warnings

import pytest
import torch

from lmtrain.backends import RetryPolicy
from lmtrain.distributed import DistributedTrainer
from lmtrain.samplers import SaveAndPost, ServerError, ServerSampler, merged_weights
from lmtrain.testing import tiny_model
from lmtrain.policy import Policy
from lmtrain.rewards import Reward, as_text
from lmtrain.trainer import TrainConfig

FAST = RetryPolicy(max_retries=3, initial_delay_s=0.01)

PROMPTS = ["What is 2 + 3?", "Say hi."]


def generate(model, tokenizer, prompt_ids, n, max_tokens, temperature, seed):
    "n sampled continuations of prompt_ids with their log-probs under softmax(logits / T), as a server would."
    g = torch.Generator().manual_seed(seed or 0)
    out = []
    for _ in range(n):
        ids, lps, finish = list(prompt_ids), [], "length"
        for _ in range(max_tokens):
            with torch.no_grad(): logits = model(torch.tensor([ids])).logits[0, -1].float()
            logp = (logits / temperature if temperature > 0 else logits).log_softmax(-1)
            t = int(torch.multinomial(logp.exp(), 1, generator=g)) if temperature > 0 else int(logp.argmax())
            ids.append(t); lps.append(float(logp[t]))
            if t == tokenizer.eos_token_id: finish = "stop"; break
        out.append((ids[len(prompt_ids):], lps, finish))
    return out


class Fake:
    "A loopback completion server: `mode` shapes its answers, `fail_first` answers 500 that many times first."
    def __init__(self):
        self.model, self.tokenizer = tiny_model(seed=0)
        self.mode, self.fail_first, self.requests, self.lock = "ids", 0, [], threading.Lock()
        fake = self
        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, method):
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size)) if size else None
                status, data = fake.handle(method, self.path, body)
                raw = data.encode() if isinstance(data, str) else json.dumps(data).encode()
                self.send_response(status); self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw))); self.end_headers(); self.wfile.write(raw)
            def do_POST(self): self._answer("POST")
            def do_GET(self): self._answer("GET")
            def log_message(self, *a): pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def handle(self, method, path, body):
        with self.lock:
            self.requests.append((method, path, body))
            if path == "/v1/models": return 200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]}
            if path == "/update_weights_from_disk": return 200, {"success": True}
            if self.fail_first > 0:
                self.fail_first -= 1
                return 500, {"error": {"message": "CUDA out of memory (pretend)", "code": 500}}
            if self.mode == "400": return 400, {"error": {"message": "max_tokens must be at least 1"}}
            if self.mode == "bad_json": return 200, "<html>proxy error</html>"
            if self.mode == "malformed": return 200, {"id": "cmpl-1", "object": "text_completion", "result": "no choices here"}
            if self.mode == "one_choice" and body["n"] != 1:
                return 500, {"error": {"code": 500, "message": "Only one completion choice is allowed", "type": "server_error"}}
            choices = []
            for i, (ids, lps, finish) in enumerate(generate(self.model, self.tokenizer, body["prompt"], body["n"],
                                                            body["max_tokens"], body["temperature"], body.get("seed"))):
                choice = {"index": i, "text": self.tokenizer.decode(ids, skip_special_tokens=True), "finish_reason": finish}
                if self.mode in ("ids", "one_choice"):
                    choice.update(token_ids=ids, logprobs={"tokens": [f"token_id:{t}" for t in ids], "token_logprobs": lps})
                elif self.mode == "content":      # llama.cpp's newer shape: a list of {id, token, logprob}
                    choice["logprobs"] = {"content": [{"id": t, "token": self.tokenizer.decode([t]), "logprob": lp}
                                                      for t, lp in zip(ids, lps)]}
                else:                              # text only: token strings, no ids
                    choice["logprobs"] = {"tokens": [self.tokenizer.decode([t]) for t in ids], "token_logprobs": lps}
                choices.append(choice)
            return 200, {"id": "cmpl-1", "object": "text_completion", "model": "tiny", "choices": choices}

    def posts(self, path="/v1/completions"): return [b for m, p, b in self.requests if m == "POST" and p == path]


@pytest.fixture
def fake():
    f = Fake()
    yield f
    f.server.shutdown(); f.server.server_close()


@pytest.fixture
def policy():
    return Policy(*tiny_model(seed=0))


@torch.no_grad()
def _local(policy, s):
    lp, _ = policy.token_logprobs(s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask, temperature=s.temperature)
    return lp


@pytest.mark.parametrize("mode", ["ids", "content"])
def test_samples_line_up_with_the_policy(fake, policy, mode):
    fake.mode = mode
    sampler = ServerSampler(policy, fake.url, retry=FAST)
    s = sampler.sample(PROMPTS, n=3, max_new_tokens=8, temperature=1.0, seed=5)
    assert len(s) == 6 and s.group.tolist() == [0, 0, 0, 1, 1, 1] and s.n == 3 and sampler.model == "tiny"
    # the prompts went out as the policy's own tokens (chat template applied once, no extra BOS)
    sent = sorted(b["prompt"] for b in fake.posts())                 # requests go out in parallel: any order
    ids, mask = policy.encode_prompts(policy.format_prompts(PROMPTS))
    assert sent == sorted(row[m.bool()].tolist() for row, m in zip(ids, mask))
    assert len({b["seed"] for b in fake.posts()}) == 2                # one seed per group
    # masks run through the first EOS; rows that hit the limit are flagged
    eos = policy.eos_ids[0]
    for row in range(len(s)):
        real = s.completion_ids[row][s.completion_mask[row].bool()].tolist()
        assert (real[-1] == eos) != bool(s.truncated[row]) and eos not in real[:-1]
    # the server's log-probs are the policy's on the same tokens (same weights), row by row
    assert float((_local(policy, s) - s.logprobs).abs().max()) < 1e-4
    assert sampler.stats["retokenised"] == 0 and sampler.stats["local_logprobs"] == 0


def test_text_only_server_is_retokenised(fake, policy):
    fake.mode = "text"
    sampler = ServerSampler(policy, fake.url, extra_body={})
    s = sampler.sample(PROMPTS, n=2, max_new_tokens=8, temperature=1.0, seed=1)
    assert sampler.stats["retokenised"] == 4
    for row, text in enumerate(s.texts):
        real = s.completion_ids[row][s.completion_mask[row].bool()].tolist()
        expected = policy.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert real[:len(expected)] == expected[:len(real)]
    # whatever came from the server or was recomputed, the log-probs are the policy's on these tokens
    assert float((_local(policy, s) - s.logprobs).abs().max()) < 1e-4


def test_a_500_is_retried_then_succeeds(fake, policy):
    fake.fail_first = 1
    sampler = ServerSampler(policy, fake.url, retry=FAST)
    s = sampler.sample(PROMPTS[:1], n=2, max_new_tokens=4, temperature=1.0, seed=0)
    assert len(s) == 2 and sampler.stats["retries"] == 1 and len(fake.posts()) == 2


def test_persistent_500_gives_up_with_the_last_error(fake, policy):
    fake.fail_first = 10
    sampler = ServerSampler(policy, fake.url, retry=RetryPolicy(max_retries=2, initial_delay_s=0.01))
    with pytest.raises(ServerError, match=r"after 3 attempts.*HTTP 500.*out of memory"):
        sampler.sample(PROMPTS[:1], n=2, max_new_tokens=4)


@pytest.mark.parametrize("mode, message", [("malformed", r"expected 'choices', a list of 2 objects, got .*no choices here"),
                                           ("bad_json", r"not JSON.*proxy error")])
def test_malformed_reply_is_a_clear_error(fake, policy, mode, message):
    fake.mode = mode
    sampler = ServerSampler(policy, fake.url, retry=FAST)
    with pytest.raises(ServerError, match=message) as err:
        sampler.sample(PROMPTS[:1], n=2, max_new_tokens=4)
    assert fake.url in str(err.value) and sampler.stats["retries"] == 0


def test_a_refusal_is_not_retried(fake, policy):
    fake.mode = "400"
    sampler = ServerSampler(policy, fake.url, retry=FAST)
    with pytest.raises(ServerError, match=r"refused the request \(HTTP 400: .*max_tokens"):
        sampler.sample(PROMPTS[:1], n=2, max_new_tokens=4)
    assert sampler.stats["retries"] == 0


def test_one_choice_per_request_servers(fake, policy):
    "llama.cpp answers n > 1 with a 500 'Only one completion choice is allowed': say what to do; n_per_request=1 works."
    fake.mode = "one_choice"
    with pytest.raises(ServerError, match="n_per_request=1"):
        ServerSampler(policy, fake.url, retry=FAST).sample(PROMPTS, n=2, max_new_tokens=4, seed=0)
    fake.requests.clear()
    s = ServerSampler(policy, fake.url, n_per_request=1).sample(PROMPTS, n=3, max_new_tokens=4, temperature=1.0, seed=0)
    assert len(s) == 6 and len(fake.posts()) == 6 and len({b["seed"] for b in fake.posts()}) == 6


def test_unreachable_server(policy):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]     # closed once we leave: nothing listens
    sampler = ServerSampler(policy, f"http://127.0.0.1:{port}", model="m", retry=RetryPolicy(max_retries=2, initial_delay_s=0.01), timeout=2)
    with pytest.raises(ServerError, match=r"no usable answer after 3 attempts; last: ConnectError"):
        sampler.sample(PROMPTS[:1], n=1, max_new_tokens=2)


class Even(Reward):
    name = "even"
    def compute(self, y_true, y_pred): return float(len(as_text(y_pred)) % 2 == 0)


def test_training_from_the_server_syncs_weights_after_each_update(fake, policy, tmp_path):
    folder = tmp_path / "served"
    sampler = ServerSampler(policy, fake.url, weight_sync=SaveAndPost(folder))
    config = TrainConfig(steps=2, prompts_per_step=2, group_size=4, max_new_tokens=6, temperature=1.0, learning_rate=1e-3,
                         zero_variance="keep", eval_every=10)
    trainer = DistributedTrainer(policy, Even(), (["a b", "c d", "e f", "g h"], [0, 0, 0, 0]), config, sampler=sampler)
    trainer.fit(progress=False)
    assert [b["model_path"] for b in fake.posts("/update_weights_from_disk")] == [str(folder.resolve())] * 2
    from transformers import AutoModelForCausalLM
    served = AutoModelForCausalLM.from_pretrained(folder)
    for (name, p), q in zip(policy.model.named_parameters(), served.parameters()):
        assert torch.equal(p.detach(), q.detach()), name                 # the server gets the trained weights


def test_no_weight_sync_warns_once(fake, policy):
    sampler = ServerSampler(policy, fake.url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler.sync_weights(policy.model); sampler.sync_weights(policy.model)
    assert len([w for w in caught if "off-policy" in str(w.message)]) == 1


def test_lora_weights_are_merged_under_base_names():
    from lmtrain.trainer import LoraConfig, apply_lora
    model, _ = tiny_model(seed=0)
    base_names = [n for n, _ in model.named_parameters()]
    lora = apply_lora(model, LoraConfig(enabled=True, r=2, alpha=4))
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n: p.normal_()                                 # a non-zero adapter
    with merged_weights(lora) as weights:
        assert list(weights) == base_names
        merged = {n: t.clone() for n, t in weights.items()}
    import copy
    reference = dict(copy.deepcopy(lora).merge_and_unload().named_parameters())
    assert all(torch.allclose(merged[n], reference[n], atol=1e-6) for n in base_names)
    assert not any(torch.equal(merged[n], t.detach()) for n, t in tiny_model(seed=0)[0].named_parameters() if "q_proj" in n)
