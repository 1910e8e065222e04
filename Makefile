# sagaline: `make demo` runs the whole system, `make test` runs lint, types and every test.
# Both create the virtual environment and install what they need first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint typecheck test unit integration e2e-tools e2e demo up bench clean

$(STAMP): pyproject.toml examples/travel/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet -e examples/travel  # the second saga's steps (examples/travel)
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy sagaline tests operator/sagaline_operator examples/travel/sagaline_travel

test: lint typecheck
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

# The end-to-end tests' Kubernetes tools (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, kwokctl, helm), built once into ~/.cache/sagaline (Go needed;
# ≈13 min cold on two idle cores, instant after).
e2e-tools: install
	$(BIN)/python -m tests.e2e.controlplane tools

# The end-to-end tests on a real control plane they start (tests/e2e); not part of `test`.
# The tools are built first if they can be (else the tests skip with the reason; under CI=true
# they fail). SAGALINE_E2E_CLUSTER=kind: on the kind cluster KUBECONFIG names, with kubectl and
# helm from PATH (.github/workflows/e2e.yml), nothing to build.
e2e: install
ifneq ($(SAGALINE_E2E_CLUSTER),kind)
	$(BIN)/python -m tests.e2e.controlplane tools --if-available
endif
	$(BIN)/pytest tests/e2e

demo: install
	$(BIN)/sagaline demo

up: install
	$(BIN)/sagaline up

bench: install
	$(BIN)/sagaline bench

clean:
	rm -rf $(VENV) .sagaline .pytest_cache .mypy_cache .ruff_cache *.egg-info
