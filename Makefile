# The newcomer's entry points. Both create .venv by themselves on a machine with only Python 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench soak clean notebooks

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Set up and run the demo: simulator + SQLite + Parquet under ./data
demo: $(STAMP)
	$(BIN)/okex-recorder demo

## Open the notebooks in JupyterLab (the `notebooks` extra) against ./data; the first notebook run makes
## the demo recording if ./data has none. JUPYTER_ARGS="--no-browser --port 8899" passes options on
## (as root, e.g. in a container, JupyterLab also needs --allow-root there).
NB_STAMP := $(VENV)/.notebooks-installed
$(NB_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[notebooks]'
	touch $(NB_STAMP)

notebooks: $(NB_STAMP)
	OKEX_RECORDING_DIR="$(CURDIR)/data" $(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)/notebooks" $(JUPYTER_ARGS)

## Set up and run the whole test suite: ruff, mypy, the import contracts (pyproject.toml), pytest
test: $(STAMP)
	$(BIN)/ruff check recorder analysis tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check recorder analysis tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

bench: $(STAMP)
	$(BIN)/python -m bench

## Soak run: the collector under random (seeded) faults, memory and accounting checked (docs/operations.md)
SOAK_SECONDS ?= 300
soak: $(STAMP)
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python -m pytest -m faults -s tests/faults/test_soak.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
