# The two set-up commands of the README: `make demo` (main job) and `make test` (test suite).
# Each creates .venv when needed and installs torch==2.13.0 first when no torch is importable there,
# from pip's configured index: on Linux x86_64 PyPI's default wheel is the CUDA build (several GB);
# a CPU-only machine gets the CPU build by installing it into .venv first (the README says how),
# and constraints.txt then keeps that torch so that no dependency pulls another build.
# `make demo` installs the package (editable) with the demo extra only (TensorBoard); `make test`
# adds the test extra (scikit-learn, W&B, MLflow, transformers, MkDocs, ...) and runs the
# tests, the docstring examples (doctests) and the strict build of the API reference (`make docs`).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BASE := $(VENV)/.video-metrics-base
DEMO := $(VENV)/.video-metrics-demo
TEST := $(VENV)/.video-metrics-test

.PHONY: demo test docs bench clean

$(BASE): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -c constraints.txt "torch==2.13.0"
	touch $(BASE)

$(DEMO): $(BASE)
	$(PY) -m pip install -c constraints.txt -e ".[demo]"
	touch $(DEMO)

$(TEST): $(BASE)
	$(PY) -m pip install -c constraints.txt -e ".[test,demo]"
	touch $(TEST) $(DEMO)

demo: $(DEMO)
	$(VENV)/bin/video-metrics demo

test: $(TEST)
	$(PY) -m pytest
	$(MAKE) docs

# the API reference in site/; --strict: a reference to a name that does not exist fails the build
docs: $(TEST)
	$(VENV)/bin/mkdocs build --strict --quiet

bench: $(TEST)
	$(PY) benchmarks/run.py --quick

clean:
	rm -rf $(VENV) build site *.egg-info
