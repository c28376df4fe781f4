# Quick start: `make demo` runs the main job, `make test` runs the tests,
# `make gpu-check` runs every CUDA path once (exit 77 and "no CUDA device" without one).
# Each target creates .venv with python3 and installs what it needs.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e ".[test]"
	touch $(STAMP)

.PHONY: install demo test lint gpu-check
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bmdkit demo --quick --out bmdkit-demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check bmdkit tests examples

gpu-check: $(STAMP)
	$(VENV)/bin/bmdkit doctor --device cuda --out gpu-check
