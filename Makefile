# Two commands on a fresh machine: `make reproduce` (the main job) and `make test`.
# Each creates the virtualenv (Python 3.12, see .python-version) when it is missing.
# .python-version selects 3.12 under pyenv; elsewhere point PYTHON at a Python >= 3.12.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/nnqft: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "nnqft_ppl needs Python >= 3.12 (ArviZ 1.x); found " + sys.version.split()[0] + ": set PYTHON=python3.12")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(BIN)/nnqft

.PHONY: venv test test-slow test-all reproduce lint bench
venv: $(BIN)/nnqft

test: venv
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: venv
	$(BIN)/python -m pytest -m slow -q

test-all: venv
	$(BIN)/python -m pytest -q

reproduce: venv
	$(BIN)/nnqft reproduce

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: venv
	$(BIN)/python benchmarks/ensemble_throughput.py
