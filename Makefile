# The two set-up commands of the README: `make demo` (main job) and `make test` (test suite).
# Each creates .venv when needed, installs the CPU build torch==2.13.0 first when no torch is
# importable there (constraints.txt keeps it pinned so that no dependency pulls a CUDA build),
# then this package in editable mode with its extras.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.video-metrics-installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install -c constraints.txt -e ".[test,demo]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/video-metrics demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/run.py --quick

clean:
	rm -rf $(VENV) build *.egg-info
