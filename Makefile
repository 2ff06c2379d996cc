# The one interface everyone uses. `make test` and `make demo` work from a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(VENV)/bin
# Every target's cluster is the one in CONVEYOR_CLUSTER_DIR when it is set. Unset, the demo and the
# cluster-* targets use .cluster/, the tests .cluster/test/ (tests/support/cluster.py) and the
# benchmarks .cluster/bench/ (bench/harness.py), so all of them can run at once. hack/cluster is
# the one place that resolves the folder (`hack/cluster env`, `hack/cluster dir`).

.PHONY: help venv binaries lint validate unit fuzz integration e2e soak test demo cluster-up cluster-down cluster-status crds bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.synced: pyproject.toml uv.lock
	@test -x $(BIN)/python || { command -v $(PYTHON) >/dev/null || PYTHON=python3; $(PYTHON) -m venv $(VENV); }
	@$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	@$(BIN)/uv sync --frozen --inexact --quiet
	@touch $@

venv: $(VENV)/.synced ## install Python dependencies into .venv from the lock file

binaries: ## build (or reuse) etcd, kube-*, kubectl, kwok and helm in the cache
	@hack/build-binaries

lint: venv ## ruff, formatting, mypy, layer contracts, generated files up to date
	@hack/validate

validate: lint

unit: venv ## unit tests (no cluster)
	@$(BIN)/pytest tests/unit -q

fuzz: venv ## the model of the core (tests/unit/test_core_model.py) with many more examples, shrinking failures
	@CONVEYOR_FUZZ=1 $(BIN)/pytest tests/unit/test_core_model.py -q --timeout=0 $(FUZZ_ARGS)

integration: venv binaries ## integration tests against the local control plane
	@$(BIN)/pytest tests/integration -q

e2e: venv binaries ## end-to-end tests: the operator as users run it, on the local control plane
	@$(BIN)/pytest tests/e2e -q

soak: venv binaries ## long drills: CONVEYOR_SOAK=1 (hostile input: 5,000 bodies per kind; CONVEYOR_HOSTILE_COUNT/SEED)
	@CONVEYOR_SOAK=1 $(BIN)/pytest tests/e2e -q -s --timeout=0 -k "soak or hostile or drill"

test: ## everything, in fail-fast stages: validate -> unit -> binaries -> cluster -> integration -> e2e
	@hack/test-stages

demo: venv binaries ## local cluster + CRDs + demo pipeline + the operator in the foreground
	@hack/demo

cluster-up: binaries ## start the local control plane (no-op when running)
	@hack/cluster up

cluster-down: ## stop the local control plane; nothing is left running
	@hack/cluster down

cluster-status: ## show the local control plane's components
	@hack/cluster status

crds: venv ## regenerate crds/ from the pydantic models
	@$(BIN)/python hack/gen-crds

bench: venv binaries ## every benchmark; results in bench/results/ (docs/benchmarks.md)
	@hack/bench

clean: cluster-down ## stop the cluster and remove .venv and .cluster
	rm -rf $(VENV) .cluster
