# sagaline: `make demo` runs the whole system, `make test` runs lint, types and every test.
# Both create the virtual environment and install what they need first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint typecheck test unit integration demo up bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy services sagaline tests operator/sagaline_operator

test: lint typecheck
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

demo: install
	$(BIN)/sagaline demo

up: install
	$(BIN)/sagaline up

bench: install
	$(BIN)/sagaline bench

clean:
	rm -rf $(VENV) .sagaline .pytest_cache .mypy_cache .ruff_cache *.egg-info
