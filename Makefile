# kstudio — every entry point a newcomer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
VENV := .venv
PY := $(VENV)/bin/python
CACHE ?= $(HOME)/.cache/kstudio
PYTEST_ARGS ?=
FAKE_NODES ?=

.PHONY: help prereqs install binaries binaries-all lint test test-unit cluster-up cluster-down demo bench bench-operator bench-operator-endpoints bench-patch bench-batch crds

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# Runs before anything long: root, Debian packages (installed as root), Python 3.11, uv, Go >= 1.26, disk.
prereqs:  ## check what demo/test/cluster-up need; as root install missing Debian packages
	@bash hack/prereqs.sh $(or $(firstword $(filter demo test cluster-up,$(MAKECMDGOALS))),prereqs)

$(VENV)/.synced: pyproject.toml uv.lock hack/pyproject.toml
	@command -v uv >/dev/null || python3 -m pip install --quiet 'uv>=0.13,<0.14'
	uv sync --frozen --python python3.11
	@touch $@

install: $(VENV)/.synced  ## .venv from uv.lock: the product (`kstudio`) and the dev tools (`kstudio-dev`)

binaries:  ## build etcd, Kubernetes and MinIO from Go modules into ~/.cache/kstudio (once per machine)
	bash hack/build-binaries.sh >/dev/null

binaries-all:  ## the same plus helm and kwok (the chart test and the fake-node tests need them)
	bash hack/build-binaries.sh helm kwok >/dev/null

lint: install  ## ruff + mypy on the packages, hadolint on the Dockerfile
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy core cli operator scorer trainer console hack
	$(VENV)/bin/hadolint Dockerfile

# The Python environment and the Go build overlap (network vs CPU), hence the -j2 sub-make.
test: prereqs  ## every test tier (starts MinIO and the local cluster itself)
	@$(MAKE) --no-print-directory -j2 install binaries-all
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-unit: install  ## pure tests only, no servers
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

crds: install  ## regenerate crds/*.yaml and the chart's copy from the resource models
	$(VENV)/bin/kstudio crds

cluster-up: prereqs  ## start the local control plane, MinIO and the node agent (idempotent); FAKE_NODES=N adds kwok nodes
	@$(MAKE) --no-print-directory -j2 install binaries
	$(VENV)/bin/kstudio-dev cluster up $(if $(FAKE_NODES),--fake-nodes $(FAKE_NODES))

cluster-down: install  ## stop the local cluster and remove everything it created
	$(VENV)/bin/kstudio-dev cluster down

demo: cluster-up  ## the full lifecycle on the local cluster
	$(VENV)/bin/python examples/demo.py

bench: install binaries  ## scorer vs MLServer: req/s, p50, p99 and ratios
	$(VENV)/bin/python bench/run.py

bench-operator: cluster-up  ## operator at N = 100, 300, 1000 TrainedModels + Endpoints: Ready time, idle cost, restart
	$(VENV)/bin/python bench/operator_scale.py

bench-operator-endpoints:  ## operator at N = 100, 300, 1000 WebServices with scorer pods on 10 kwok nodes: + patch one, delete all
	@$(MAKE) --no-print-directory cluster-up FAKE_NODES=10
	$(VENV)/bin/python bench/operator_scale.py --mode endpoints

bench-batch: install binaries  ## BatchJob shards 1/2/4 x parallelism 1/2 on 10M rows: rows/s, speed-up, share of the single-core limit, RSS; BATCH_VIA=cluster for real BatchJobs
	$(VENV)/bin/python bench/batch_scale.py --via $(or $(BATCH_VIA),processes) $(BATCH_ARGS)

bench-patch: cluster-up  ## patch a 2-replica endpoint's model under load: seconds to 100% new model, failed requests
	$(VENV)/bin/python bench/patch.py
