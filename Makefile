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

.PHONY: install train test test-slow test-browser sync readme docs clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py settings.ini
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip check
	touch $@

train: install
	$(BIN)/lmtrain train --out $(OUT)

test: install sync
	$(BIN)/nbdev_test --n_workers 2 --timing
	$(BIN)/pytest -q -p no:cacheprovider tests --ignore=tests/browser
	$(MAKE) --no-print-directory docs
	$(MAKE) --no-print-directory test-browser

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
	rm -rf $(VENV) _proc _docs docs/_build
