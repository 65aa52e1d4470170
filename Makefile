PY ?= python
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install:  ## install torch (CPU) and the project with its test extras
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[dev]"

lint:  ## ruff lint + format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:  ## ruff auto-format
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test:  ## the default test suite (slow and gpu tests excluded)
	$(PY) -m pytest -q

test-slow:  ## the slow end-to-end checks
	$(PY) -m pytest -q -m slow

demo:  ## the main job on the built-in synthetic benchmark
	$(PY) run.py

docs:  ## build the documentation site into site/ (strict: broken links fail)
	$(PY) -m mkdocs build --strict

samples:  ## redraw the synthetic sample figure (docs/synthetic.md)
	$(PY) scripts/render_samples.py --out docs/synthetic_samples.png

.PHONY: help install lint format test test-slow demo docs samples
