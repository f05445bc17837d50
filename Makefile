# Two commands on a fresh machine: `make train` (set up, run the main job) and `make test` (set up, run the tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
OUT ?= runs/default
# GSM8K as published, from the shared folder beside the checkout when there is one (no download needed).
export LMTRAIN_DATA ?= $(if $(wildcard ../shared/data/gsm8k/test.jsonl),$(abspath ../shared/data),)

.PHONY: install train test check lint test-slow test-browser fuzz upgrade sync readme docs clean

install: $(VENV)/.installed

# The tested versions of every dependency (constraints.txt), so that a fresh install next month is this one.
$(VENV)/.installed: setup.py settings.ini constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/pip check
	touch $@

train: install
	$(BIN)/lmtrain train --out $(OUT)

test: install sync lint check

# The tests themselves, in the environment VENV names (make upgrade runs them in a fresh one).
check: install
	$(BIN)/nbdev_test --n_workers 2 --timing
	$(BIN)/pytest -q -p no:cacheprovider tests --ignore=tests/browser
	$(MAKE) --no-print-directory docs
	$(MAKE) --no-print-directory test-browser

# A static check of the package: undefined names, unused or redefined imports (pyflakes' rules), which no
# notebook test can catch when a notebook cell imports what the exported module forgot.
lint: install
	$(BIN)/ruff check --select F lmtrain tests scripts

# The fuzz suites at nightly size, and every property test on examples make test has not seen
# (make test draws the same ones on every clone: tests/conftest.py).
fuzz: install
	LMTRAIN_FUZZ_EXAMPLES=5000 HYPOTHESIS_PROFILE=explore $(BIN)/pytest -q -p no:cacheprovider tests/test_fuzz_text.py tests/test_fuzz_files.py
	HYPOTHESIS_PROFILE=explore $(BIN)/pytest -q -p no:cacheprovider tests/test_data_models.py tests/test_parsing.py tests/test_rewards.py tests/test_datasets.py

# The latest releases of every dependency in a fresh environment; when the tests pass, constraints.txt is rewritten.
upgrade:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install -q --upgrade pip
	.venv-latest/bin/pip install -q "$(TORCH_SPEC)"
	.venv-latest/bin/pip install -q --upgrade -e ".[dev]"
	.venv-latest/bin/pip check
	touch .venv-latest/.installed
	$(MAKE) --no-print-directory VENV=.venv-latest sync lint check
	{ sed -n '1,2p' constraints.txt; .venv-latest/bin/pip freeze --exclude-editable | grep -v '^torch=='; } > constraints.new
	mv constraints.new constraints.txt
	@echo "constraints.txt now pins the latest releases; commit it"

# Headless Debian chromium driven by Playwright. Without chromium the browser tests are skipped,
# unless LMTRAIN_REQUIRE_BROWSER=1 (CI sets it) makes that an error.
test-browser: install
	@if command -v chromium >/dev/null || [ -n "$$LMTRAIN_CHROMIUM" ]; then \
	  $(BIN)/pytest -q -p no:cacheprovider tests/browser; \
	elif [ "$$LMTRAIN_REQUIRE_BROWSER" = 1 ]; then echo "chromium is required (apt-get install -y chromium)"; exit 1; \
	else echo "browser tests skipped: no chromium (apt-get install -y chromium)"; fi

# The docs site, offline: nbdev's notebook processing, then Sphinx + myst-nb, warnings as errors.
docs: install
	$(BIN)/python scripts/build_docs.py

test-slow: install
	$(BIN)/nbdev_test --n_workers 1 --flags slow --timing
	@# pytest exits 5 when no test is marked slow: nothing to run is not a failure
	$(BIN)/pytest -q -p no:cacheprovider -m slow tests || [ $$? -eq 5 ]

# Notebooks are the source: exporting and cleaning them must leave git unchanged.
sync: install
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(MAKE) --no-print-directory readme
	@changed=$$(git status --porcelain -- nbs lmtrain README.md); \
	if [ -n "$$changed" ]; then echo "nbs/, lmtrain/ and README.md are out of sync (run nbdev_export, nbdev_clean, make readme and commit):"; echo "$$changed"; git diff --stat -- nbs lmtrain README.md; exit 1; fi

readme:
	$(BIN)/jupyter nbconvert --to markdown --log-level WARN --stdout nbs/index.ipynb > README.md

clean:
	rm -rf $(VENV) .venv-latest _proc _docs docs/_build
