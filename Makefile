# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,bench,embed]"
	touch $(STAMP)

## demo: set up, then run the sample plan on a fresh copy of the sample project,
## approving its irreversible commit from the inbox on the way; then the coding agent
## on a sample repository (`trestle demo`: a recorded trajectory replayed offline)
demo: $(STAMP)
	scripts/demo.sh $(BIN)/trestle

## test: set up, lint, type-check and run the test suite
test: $(STAMP) lint typecheck
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/compare.py

clean:
	rm -rf $(VENV) .demo .trestle .pytest_cache .mypy_cache .ruff_cache
