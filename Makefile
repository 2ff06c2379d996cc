# The one interface everyone uses. `make test` and `make demo` work from a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.8
VENV := .venv
# The drills `make soak` runs at their long sizes (tests/support/soak.py); `make test` runs them too,
# bounded. The random-kill drill: 20 releases over 5 pipelines, 20 SIGKILLs at random moments (make
# test runs 8); SOAK_KILLS, SOAK_RELEASES and SOAK_SEED change it (the test prints the seed it used).
# Outages last 70 s instead of 20 s; hostile input is 5,000 bodies per kind, not 500
# (CONVEYOR_HOSTILE_COUNT and CONVEYOR_HOSTILE_SEED change it).
SOAK_TESTS := tests/e2e/test_outages.py tests/e2e/test_crash_drills.py tests/e2e/test_hostile_input.py
SOAK_KILLS ?= 20
SOAK_RELEASES ?= 20
BIN := $(VENV)/bin
# Every target's cluster is the one in CONVEYOR_CLUSTER_DIR when it is set. Unset, the demo and the
# cluster-* targets use .cluster/, the tests .cluster/test/ (tests/support/cluster.py) and the
# benchmarks .cluster/bench/ (bench/harness.py), so all of them can run at once. hack/cluster is
# the one place that resolves the folder (`hack/cluster env`, `hack/cluster dir`).

.PHONY: help venv binaries browser lint validate unit fuzz soak integration e2e gitops argocd-up test demo cluster-up cluster-down cluster-status crds bench clean

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

browser: ## install headless Chromium for the dashboard tests
	@hack/ensure-browser

lint: venv ## ruff, formatting, mypy, layer contracts, generated files up to date
	@hack/validate

validate: lint

unit: venv ## unit tests (no cluster)
	@$(BIN)/pytest tests/unit -q

fuzz: venv ## the model of the core (tests/unit/test_core_model.py) with many more examples, shrinking failures
	@CONVEYOR_FUZZ=1 $(BIN)/pytest tests/unit/test_core_model.py -q --timeout=0 $(FUZZ_ARGS)

soak: venv binaries ## the long fault drills (outages, random kills, hostile input): CONVEYOR_SOAK=1
	@CONVEYOR_SOAK=1 CONVEYOR_SOAK_KILLS=$(SOAK_KILLS) CONVEYOR_SOAK_RELEASES=$(SOAK_RELEASES) \
	  CONVEYOR_SOAK_SEED=$(SOAK_SEED) $(BIN)/pytest $(SOAK_TESTS) -q -s --timeout=0 $(SOAK_ARGS)

integration: venv binaries ## integration tests against the local control plane
	@$(BIN)/pytest tests/integration -q

e2e: venv binaries browser ## end-to-end tests: the operator as users run it, on the local control plane
	@$(BIN)/pytest tests/e2e -q

gitops: venv binaries ## the gitops stories: a real Argo CD (built from the Go proxy) syncs Releases from Git
	@hack/build-binaries argocd && $(BIN)/pytest tests/gitops -q

argocd-up: binaries ## build (or reuse) Argo CD and start it beside the local cluster (hack/argocd)
	@hack/argocd up

test: ## everything, in fail-fast stages: validate -> unit -> binaries -> browser -> cluster -> integration -> e2e -> gitops
	@hack/test-stages

demo: venv binaries ## local cluster + CRDs + demo pipeline + the operator in the foreground
	@hack/demo

cluster-up: binaries ## start the local control plane (no-op when running)
	@hack/cluster up

cluster-down: ## stop the local control plane; nothing is left running
	@hack/cluster down

cluster-status: ## show the local control plane's components
	@hack/cluster status

crds: venv ## regenerate crds/ and docs/schemas/ from the pydantic models
	@hack/gen-crds && hack/gen-crds --out charts/conveyor/files/crds

bench: venv binaries browser ## every benchmark; results in bench/results/ (docs/benchmarks.md)
	@hack/bench

clean: cluster-down ## stop the cluster and remove .venv and .cluster
	rm -rf $(VENV) .cluster
