"Tests of lmtrain.datasets: JSON-lines reading, numbers, checked downloads over loopback HTTP, GSM8K sources, synthetic tasks."
import hashlib, http.server, json, os, subprocess, sys, threading
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import lmtrain
from lmtrain.data_models import MathQuestion, NumericalAnswer, NumericalAnswerWithThinking
from lmtrain.datasets import (ChecksumError, DatasetError, DownloadError, cache_root, download_file, load_jsonl_pairs,
                              save_jsonl_pairs, serve_folder)
from lmtrain.files import FileFormatError, read_jsonl, sha256_file
from lmtrain.parsing import format_number, parse_gold_number
from lmtrain.datasets import gsm8k, synthetic

REPO = Path(__file__).resolve().parents[1]


def _shared_gsm8k() -> Path | None:
    "The shared copy of the published GSM8K files: $LMTRAIN_DATA, or ../shared/data/gsm8k beside the checkout."
    candidates = [Path(os.environ["LMTRAIN_DATA"]) if os.environ.get("LMTRAIN_DATA") else None,
                  REPO.parent/"shared"/"data"/"gsm8k", Path("/work/shared/data/gsm8k")]
    for p in filter(None, candidates):
        for folder in (p, p/"gsm8k"):
            if (folder/"train.jsonl").is_file() and (folder/"test.jsonl").is_file(): return folder
    return None


SHARED = _shared_gsm8k()
needs_gsm8k = pytest.mark.skipif(SHARED is None, reason="no shared GSM8K copy (set LMTRAIN_DATA or provide ../shared/data/gsm8k)")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    "An empty cache under tmp_path, and no LMTRAIN_DATA / LMTRAIN_GSM8K_URL from the caller's environment."
    monkeypatch.setenv("LMTRAIN_CACHE", str(tmp_path/"cache"))
    monkeypatch.delenv("LMTRAIN_DATA", raising=False)
    monkeypatch.delenv("LMTRAIN_GSM8K_URL", raising=False)
    return tmp_path/"cache"/"datasets"/"gsm8k"


# ---------------------------------------------------------------- reading JSON lines

@pytest.mark.parametrize("data, line, words", [
    (b'{"a": 1}\n\n[1, 2]\n', 3, "expected a JSON object"),
    (b'{"a": 1}\n{"a": \n', 2, "invalid JSON"),
    (b'{"a": 1}\n{"a": "\xff"}\n', 2, "not UTF-8"),
    (b'"just a string"\n', 1, "expected a JSON object"),
])
def test_read_jsonl_names_file_and_line(tmp_path, data, line, words):
    f = tmp_path/"rows.jsonl"; f.write_bytes(data)
    with pytest.raises(DatasetError) as info: list(read_jsonl(f))
    assert info.value.line == line and info.value.path == str(f)
    assert words in str(info.value) and str(info.value).startswith(f"{f}:{line}: ")


def test_read_jsonl_counts_blank_lines(tmp_path):
    f = tmp_path/"rows.jsonl"; f.write_text('{"a": 1}\n\n  \n{"a": 2}\n')
    assert list(read_jsonl(f)) == [(1, {"a": 1}), (4, {"a": 2})]


@pytest.mark.parametrize("text, value", [("18", 18), ("1,000", 1000), ("109,200,000", 109200000), ("$1,080", 1080),
                                         ("-3", -3), ("-$5", -5), ("3.5", 3.5), ("50%", 50), ("7.", 7), (" 42 ", 42), (12, 12)])
def test_parse_gold_number(text, value):
    assert parse_gold_number(text) == value


@pytest.mark.parametrize("text", ["", "1,2", "1,00", "12,3456", "abc", "--3", "3/4", "18 apples", True, float("inf"),
                                  "9" * 400, 10**400, "1e999", "NaN", "Infinity"])
def test_parse_gold_number_rejects(text):
    with pytest.raises(ValueError, match="expected"): parse_gold_number(text)


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_parse_gold_number_reads_thousands_separators(n):
    assert parse_gold_number(f"{n:,}") == n and parse_gold_number(format_number(float(n))) == n


def test_load_jsonl_pairs_round_trip_and_errors(tmp_path):
    f = tmp_path/"mine.jsonl"
    f.write_text('{"prompt": "What is 2 + 2?", "answer": "4"}\n{"question": "Q?", "answer": "x\\n#### 1,000"}\n{"prompt": "P", "answer": 0.5}\n')
    x, y = load_jsonl_pairs(f)
    assert [a.answer for a in y] == [4, 1000, 0.5] and all(isinstance(q, MathQuestion) for q in x)
    assert [type(a).__name__ for a in y] == ["NumericalAnswer", "NumericalAnswerWithThinking", "NumericalAnswer"]
    assert y[1].thinking == "x"   # the working before `####` is kept, for worked examples
    assert load_jsonl_pairs(save_jsonl_pairs(tmp_path/"again.jsonl", x, y)) == (x, y)
    f.write_text('{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": "two"}\n')
    with pytest.raises(DatasetError, match=r"mine\.jsonl:2: field 'answer'") as info: load_jsonl_pairs(f)
    assert (info.value.line, info.value.field) == (2, "answer")
    f.write_text('{"text": "a", "answer": "1"}\n')
    with pytest.raises(DatasetError, match=r":1: field 'prompt': missing"): load_jsonl_pairs(f)
    f.write_text('{"prompt": "a", "answer": null}\n')
    with pytest.raises(DatasetError, match=r":1: field 'answer': expected str or int or float, got NoneType"): load_jsonl_pairs(f)
    f.write_text("")
    with pytest.raises(DatasetError, match="no rows"): load_jsonl_pairs(f)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_parse_gold_number_reads_what_python_writes(x):
    # repr writes 1e-05 and 1e+16: scientific notation must be read whole, never truncated to 1.0
    assert parse_gold_number(repr(x)) == x and parse_gold_number(format_number(x)) == x


# ---------------------------------------------------------------- hostile data files (issue 14)

@pytest.mark.parametrize("answer", ['"' + "9" * 400 + '"', "9" * 400, '"#### ' + "9" * 400 + '"', "1e999", '"NaN"', "true"])
def test_an_answer_that_is_not_a_finite_number_names_file_line_field(tmp_path, answer):
    f = tmp_path / "data.jsonl"
    f.write_text('{"prompt": "ok", "answer": 1}\n{"prompt": "big", "answer": ' + answer + '}\n')
    with pytest.raises(DatasetError) as info: load_jsonl_pairs(f)
    assert (info.value.path, info.value.line, info.value.field) == (str(f), 2, "answer")
    assert str(info.value).startswith(f"{f}:2: field 'answer': ")


def test_a_100_mb_prompt_line_is_refused_without_reading_it(tmp_path):
    f = tmp_path / "big.jsonl"
    with f.open("w") as out:
        out.write('{"prompt": "ok", "answer": 1}\n{"prompt": "')
        for _ in range(100): out.write("x" * (1 << 20))
        out.write('", "answer": 2}\n')
    with pytest.raises(FileFormatError, match=r"big\.jsonl:2: line longer than"): load_jsonl_pairs(f)


def test_a_long_prompt_below_the_line_limit_is_refused_by_the_field_limit(tmp_path):
    f = tmp_path / "long.jsonl"
    f.write_text('{"prompt": "' + "x" * 300_000 + '", "answer": 1}\n')
    with pytest.raises(DatasetError, match=r"long\.jsonl:1: field 'prompt': 300,000 characters; expected at most 200,000"):
        load_jsonl_pairs(f)
    assert load_jsonl_pairs(f, max_chars=400_000)[1][0].answer == 1


def test_data_pointing_at_a_folder_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="is a folder, expected a JSON-lines file") as info: load_jsonl_pairs(tmp_path)
    assert not isinstance(info.value, IsADirectoryError) and "\n" not in str(info.value)


def test_an_integer_past_pythons_digit_limit_is_a_dataset_error(tmp_path):
    f = tmp_path / "digits.jsonl"
    f.write_text('{"prompt": "ok", "answer": 1}\n{"prompt": "q", "answer": ' + "1" * 5000 + '}\n')
    with pytest.raises(DatasetError, match=r"digits\.jsonl:2: invalid JSON \(Exceeds the limit"): load_jsonl_pairs(f)
    f.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q", "answer": ' + "1" * 5000 + '}\n')
    with pytest.raises(DatasetError, match=r"digits\.jsonl:2: invalid JSON"): gsm8k.load_split(f)


def test_dataset_error_is_the_files_error():
    assert DatasetError is FileFormatError and issubclass(DatasetError, ValueError)


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LMTRAIN_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("LMTRAIN_CACHE"); monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path/"xdg"))
    assert cache_root() == tmp_path/"xdg"/"lmtrain"


# ---------------------------------------------------------------- downloads over loopback HTTP

def test_download_checks_and_writes_atomically(tmp_path):
    served = tmp_path/"served"; served.mkdir()
    payload = b"0123456789" * 100_000
    (served/"blob.bin").write_bytes(payload)
    good = hashlib.sha256(payload).hexdigest()
    with serve_folder(served) as url:
        dest = download_file(f"{url}/blob.bin", tmp_path/"out"/"blob.bin", sha256=good)
        assert dest.read_bytes() == payload
        with pytest.raises(ChecksumError) as info: download_file(f"{url}/blob.bin", tmp_path/"out"/"bad.bin", sha256="ab" * 32)
        assert info.value.got == good and "nothing was saved" in str(info.value)
        with pytest.raises(DownloadError, match="404") as info: download_file(f"{url}/nope.bin", tmp_path/"out"/"nope.bin", backoff=10)
        assert not info.value.retryable  # and the test did not sleep 10 s
    assert sorted(p.name for p in (tmp_path/"out").iterdir()) == ["blob.bin"]  # no .part files, no bad file


def test_download_truncated_body_is_an_error(tmp_path):
    class Truncating(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header("Content-Length", "1000"); self.end_headers()
            self.wfile.write(b"only ten b"); self.wfile.flush(); self.close_connection = True
        def log_message(self, *args): pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Truncating)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(DownloadError) as info:
            download_file(f"http://127.0.0.1:{server.server_address[1]}/x", tmp_path/"x", retries=1, backoff=0.01)
        assert info.value.retryable and "closed after 10 of 1000 bytes" in str(info.value)
    finally: server.shutdown(); server.server_close()
    assert list(tmp_path.iterdir()) == []


def test_concurrent_downloads_of_one_file(tmp_path):
    served = tmp_path/"served"; served.mkdir()
    payload = os.urandom(300_000); (served/"f").write_bytes(payload)
    digest, errors = hashlib.sha256(payload).hexdigest(), []
    with serve_folder(served) as url:
        def fetch():
            try: download_file(f"{url}/f", tmp_path/"out"/"f", sha256=digest)
            except Exception as e: errors.append(e)
        threads = [threading.Thread(target=fetch) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
    assert errors == [] and (tmp_path/"out"/"f").read_bytes() == payload
    assert [p.name for p in (tmp_path/"out").iterdir()] == ["f"]


# ---------------------------------------------------------------- GSM8K

def test_split_answer():
    thinking, answer = gsm8k.split_answer("Natalia sold 48/2 = <<48/2=24>>24 clips.\nSo 48+24 = <<48+24=72>>72.\n#### 1,072")
    assert thinking == "Natalia sold 48/2 = 24 clips.\nSo 48+24 = 72." and answer == 1072


@pytest.mark.parametrize("row, field", [
    ('{"question": "Q?", "answer": "no final answer"}', "answer"),
    ('{"question": "Q?", "answer": "#### ten"}', "answer"),
    ('{"answer": "#### 3"}', "question"),
    ('{"question": 5, "answer": "#### 3"}', "question"),
    ('{"question": " ", "answer": "#### 3"}', "question"),
    ('{"question": "Q?", "answer": ""}', "answer"),
])
def test_malformed_gsm8k_row_names_file_line_field(tmp_path, row, field):
    good = json.dumps({"question": "Q?", "answer": "1 + 1 = <<1+1=2>>2\n#### 2"})
    f = tmp_path/"train.jsonl"; f.write_text(f"{good}\n{good}\n{row}\n")
    with pytest.raises(DatasetError) as info: gsm8k.load_split(f)
    assert (info.value.path, info.value.line, info.value.field) == (str(f), 3, field)
    assert str(info.value).startswith(f"{f}:3: field '{field}': ")


@needs_gsm8k
def test_shared_copy_is_the_published_files():
    assert {s: sha256_file(SHARED/f"{s}.jsonl") for s in gsm8k.SPLITS} == gsm8k.SHA256


@needs_gsm8k
def test_load_data_like_the_seed(clean_env):
    (x_train, y_train), (x_test, y_test) = lmtrain.datasets.gsm8k.load_data(path=SHARED)
    assert (len(x_train), len(y_train), len(x_test), len(y_test)) == (7473, 7473, 1319, 1319)
    assert lmtrain.datasets.gsm8k.get_input_data_model() is MathQuestion
    assert lmtrain.datasets.gsm8k.get_output_data_model() is NumericalAnswerWithThinking
    assert all(type(q) is MathQuestion for q in x_train + x_test)
    assert all(type(a) is NumericalAnswerWithThinking for a in y_train + y_test)
    assert not any("<<" in a.thinking or "####" in a.thinking for a in y_train + y_test)
    assert y_test[0].answer == 18 and y_train[345].answer == 1080 and y_train[644].answer == 109_200_000
    assert not clean_env.exists()  # a path argument never touches the cache


@needs_gsm8k
def test_sources_in_order(clean_env, monkeypatch):
    cache = clean_env
    with pytest.raises(FileNotFoundError, match="download=False"): gsm8k.find_data(download=False)
    with serve_folder(SHARED) as url:
        monkeypatch.setenv("LMTRAIN_GSM8K_URL", url)  # the mirror, named by the environment
        assert gsm8k.find_data() == (cache, "download")
    assert sorted(p.name for p in cache.iterdir()) == ["test.jsonl", "train.jsonl"]
    monkeypatch.setenv("LMTRAIN_GSM8K_URL", "http://127.0.0.1:9")  # nothing listens: the cache must serve
    assert gsm8k.find_data() == (cache, "cache")
    (x_train, _), (x_test, _) = gsm8k.load_data()
    assert (len(x_train), len(x_test)) == (7473, 1319)
    monkeypatch.setenv("LMTRAIN_DATA", str(SHARED.parent))  # a folder with a gsm8k/ subfolder
    assert gsm8k.find_data() == (SHARED, "LMTRAIN_DATA")
    monkeypatch.setenv("LMTRAIN_DATA", str(clean_env.parent/"nowhere"))
    assert gsm8k.find_data(path=SHARED) == (SHARED, "path")
    with pytest.raises(FileNotFoundError, match=r"\$LMTRAIN_DATA is"): gsm8k.find_data()
    with pytest.raises(FileNotFoundError, match="the path argument"): gsm8k.load_data(path=clean_env.parent/"nowhere")


@needs_gsm8k
def test_checksum_mismatch_leaves_no_cache(clean_env, tmp_path):
    mirror = tmp_path/"mirror"; mirror.mkdir()
    (mirror/"train.jsonl").write_bytes((SHARED/"train.jsonl").read_bytes()[:-100])  # truncated
    (mirror/"test.jsonl").write_bytes((SHARED/"test.jsonl").read_bytes())
    with serve_folder(mirror) as url:
        with pytest.raises(ChecksumError, match="train.jsonl") as info: gsm8k.load_data(base_url=url)
    assert info.value.expected == gsm8k.SHA256["train"]
    assert not clean_env.exists() or not any(clean_env.iterdir())


@needs_gsm8k
def test_corrupt_cache_is_fetched_again(clean_env):
    clean_env.mkdir(parents=True)
    for s in gsm8k.SPLITS: (clean_env/f"{s}.jsonl").write_bytes((SHARED/f"{s}.jsonl").read_bytes())
    (clean_env/"test.jsonl").write_text('{"question": "edited", "answer": "#### 1"}\n')
    with serve_folder(SHARED) as url: assert gsm8k.find_data(base_url=url) == (clean_env, "download")
    assert sha256_file(clean_env/"test.jsonl") == gsm8k.SHA256["test"]


# ---------------------------------------------------------------- synthetic tasks

def _python_answer(question: str) -> float:
    "An independent answer for a generated question (digits and operators only, checked, so eval is safe)."
    expression = question.removeprefix("What is ").split("?")[0]
    assert set(expression) <= set("0123456789+-*/() "), expression
    return eval(expression, {"__builtins__": {}})


def test_registry():
    assert {"addition", "arithmetic", "multiplication"} <= set(synthetic.list_tasks())
    with pytest.raises(KeyError, match="unknown synthetic task 'chess'"): synthetic.make_task("chess", 3)
    x, y = synthetic.make_task("addition", n=20, seed=0)
    assert all(q.question.startswith("What is ") and " + " in q.question for q in x)
    assert all(isinstance(a, NumericalAnswerWithThinking) and 2 <= a.answer <= 60 for a in y)


def test_deterministic_and_prefix_stable():
    assert synthetic.make_task("arithmetic", 40, seed=5) == synthetic.make_task("arithmetic", 40, seed=5)
    assert synthetic.make_task("arithmetic", 40, seed=5)[0] == synthetic.make_task("arithmetic", 90, seed=5)[0][:40]
    assert synthetic.make_task("arithmetic", 40, seed=5)[0] != synthetic.make_task("arithmetic", 40, seed=6)[0]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), ops=st.sets(st.sampled_from("+-*/"), min_size=1), n_operands=st.integers(2, 4),
       low=st.integers(-5, 5), width=st.integers(0, 40), allow_negative=st.booleans())
def test_arithmetic_answers_are_right(seed, ops, n_operands, low, width, allow_negative):
    try:
        x, y = synthetic.arithmetic(10, seed=seed, ops=tuple(sorted(ops)), low=low, high=low + width,
                                    n_operands=n_operands, allow_negative=allow_negative, max_tries=200)
    except ValueError as e:  # options that cannot be met must say so, not loop
        assert "no problem met the options" in str(e); return
    for q, a in zip(x, y):
        assert _python_answer(q.question) == a.answer
        assert len(a.thinking.splitlines()) == n_operands - 1
        assert allow_negative or a.answer >= 0


@pytest.mark.parametrize("bad", [dict(ops=("%",)), dict(low=5, high=1), dict(n_operands=1), dict(answer_format="json"), dict(n=-1)])
def test_arithmetic_rejects_bad_options(bad):
    with pytest.raises(ValueError): synthetic.arithmetic(**{"n": 3, **bad})


def test_answer_formats_and_targets():
    for fmt, last in [("####", "#### "), ("boxed", "\\boxed{"), ("answer_tag", "<answer>")]:
        x, y = synthetic.make_task("arithmetic", 5, seed=1, answer_format=fmt, with_thinking=False)
        assert all(isinstance(a, NumericalAnswer) for a in y)
        assert all(synthetic.render_target(a, fmt).startswith(last) for a in y)
    x, _ = synthetic.addition(3, answer_format=None)
    assert all(q.question.endswith("?") for q in x)


def test_synthetic_load_data_is_disjoint():
    (x_train, y_train), (x_test, y_test) = synthetic.load_data("addition", n_train=500, n_test=150, seed=2)
    train, test = [q.question for q in x_train], [q.question for q in x_test]
    assert (len(train), len(test), len(y_train), len(y_test)) == (500, 150, 500, 150)
    assert len(set(train)) == 500 and not set(train) & set(test)
    with pytest.raises(ValueError, match="distinct questions"): synthetic.load_data("addition", n_train=890, n_test=20)


# ---------------------------------------------------------------- the seed's spelling, from a cold start

def test_seed_spelling_in_a_fresh_interpreter():
    code = ("import lmtrain, sys; print(lmtrain.datasets.gsm8k.get_output_data_model().__name__, "
            "len(lmtrain.datasets.synthetic.make_task('addition', 3)[0]), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout.split()
    assert out == ["NumericalAnswerWithThinking", "3", "False"]
    assert {"gsm8k", "synthetic"} <= set(dir(lmtrain.datasets))
