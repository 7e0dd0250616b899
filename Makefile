# The model serving stack. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
GRPC_PORT ?= 8500
MODEL_ROOT ?= models
DEFAULT_MODEL := $(MODEL_ROOT)/digits/1/model.keras
PYTEST_ARGS ?=
REPLICAS ?= 2
BENCH_ARGS ?=

.PHONY: help setup model run run-inference run-gateway lint test load-test bench soak docs clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/.installed: pyproject.toml
	@tools/system-packages.sh python3-venv:python3-venv nginx:nginx-light wrk:wrk shellcheck:shellcheck \
		prometheus:prometheus promtool:prometheus chromium:chromium
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[inference,train,dev,deploy,bench]"
	@# tensorflow-serving-api requires `tensorflow`, which would clash with tensorflow-cpu: no deps
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
		$$($(BIN)/python docker/requirements.py pyproject.toml --no-deps)
	@touch $@

# KServe's SDK for the tests, in a virtualenv of its own: kserve 0.21.0 pins python-dateutil<3,
# which the kubernetes client of the deploy extra cannot live with (tests/support/kserve_client.py).
KSERVE := $(VENV)/kserve/bin/kserve-installed
$(KSERVE): | $(BIN)/.installed
	$(PYTHON) -m venv $(VENV)/kserve
	$(VENV)/kserve/bin/python -m pip install --quiet --disable-pip-version-check "kserve==0.21.0"
	@touch $@

# Triton's perf_analyzer, from tritonclient 2.38.0's wheel, beside the project's tritonclient.
PERF_ANALYZER := $(BIN)/perf_analyzer
$(PERF_ANALYZER): tools/perf-analyzer.sh | $(BIN)/.installed
	tools/perf-analyzer.sh $(VENV)

setup: $(BIN)/.installed $(KSERVE) $(PERF_ANALYZER) ## Create .venv with everything to run, train and test (idempotent)

$(DEFAULT_MODEL): | $(BIN)/.installed
	$(BIN)/python tools/train_digits.py --out $(MODEL_ROOT)/digits --version 1

model: $(DEFAULT_MODEL) ## Train the default digits model into models/digits/1 (offline, seconds)

run: setup model ## Start nginx on 127.0.0.1:8080 (PORT=), gRPC on :8500 (GRPC_PORT=) -> gateway -> 2 inference replicas (REPLICAS=); Ctrl-C stops
	exec $(BIN)/python -m stack --port $(PORT) --grpc-port $(GRPC_PORT) --replicas $(REPLICAS) --model-root $(MODEL_ROOT)

run-inference: setup model ## Start the inference service alone on 127.0.0.1:8080 (PORT=...)
	@echo "inference on http://127.0.0.1:$(PORT)  (Ctrl-C stops)"
	@echo "try: curl -s -d @examples/digit-0.json http://127.0.0.1:$(PORT)/v1/models/digits:predict"
	INFERENCE_BIND=127.0.0.1:$(PORT) INFERENCE_MODEL_ROOT=$(MODEL_ROOT) \
		exec $(BIN)/gunicorn -c services/inference/gunicorn.conf.py

GATEWAY_PORT ?= 8000
ROUTES ?= examples/gateway-routes.yaml

run-gateway: setup ## Start the gateway alone on 127.0.0.1:8000 (GATEWAY_PORT=...), routing by ROUTES=... (default: to run-inference)
	@echo "gateway on http://127.0.0.1:$(GATEWAY_PORT), routes from $(ROUTES)  (Ctrl-C stops)"
	@echo "try: curl -s -d @examples/digit-0.json http://127.0.0.1:$(GATEWAY_PORT)/v1/models/digits:predict"
	GATEWAY_BIND=127.0.0.1:$(GATEWAY_PORT) GATEWAY_ROUTES_FILE=$(ROUTES) \
		exec $(BIN)/gunicorn -c services/gateway/gunicorn.conf.py

lint: setup ## ruff over the whole tree (rules and line length: pyproject.toml)
	$(BIN)/ruff check .

test: setup lint ## Lint, then run every test (unit, integration, end-to-end) against real servers
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(BIN)/.loadtest: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[loadtest]"
	@touch $@

load-test: setup model $(BIN)/.loadtest ## Locust, headless, against the stack on PORT (started if absent): reports/loadtest.{html,csv}
	$(BIN)/python -m loadtest.run --url http://127.0.0.1:$(PORT)

bench: setup ## Benchmark: raw model limit, naive and tuned Flask, the service, the stack (<10 min) -> reports/bench.md
	$(BIN)/python -m bench $(BENCH_ARGS)

SOAK_SECONDS ?= 600

soak: setup model ## 10-min mixed run on its own stack (SOAK_SECONDS=60 for a short one): reports/soak.{md,json}
	$(BIN)/python -m soak --seconds $(SOAK_SECONDS) --model-root $(MODEL_ROOT) --out reports/soak

docs: setup ## Regenerate docs/configuration.md from the settings declared in code
	$(BIN)/python -m tools.configuration_doc > docs/configuration.md

clean: ## Remove the virtualenv, caches and reports (keeps trained models)
	rm -rf $(VENV) .pytest_cache reports .run
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# -- Image: Dockerfile.inference, one image for both services (README, section "Image") --------
.PHONY: image
image: ## Build the Docker image of both services (BASE_IMAGE=..., MODEL_SOURCE=context MODEL=.. MODEL_VERSION=..)
	@tools/docker-engine.sh
	@tools/build-image.sh

# ---- Kubernetes: the Helm chart, plain manifests, kind e2e, deploy ---------------------------
CHART := helm/modelserver
RELEASE ?= modelserver
NAMESPACE ?= modelserver
DRY_RUN ?= 0
KEEP_CLUSTER ?= 0

.PHONY: manifests e2e deploy upgrade

manifests: setup ## Render k8s/manifests/modelserver.yaml from the chart (a test fails on drift)
	$(BIN)/python -m tools.helm_template $(CHART) --name modelserver --header -o k8s/manifests/modelserver.yaml

e2e: setup ## Stack on a kind cluster + tests/e2e, then delete it (DRY_RUN=1 prints, KEEP_CLUSTER=1 keeps)
	DRY_RUN=$(DRY_RUN) KEEP_CLUSTER=$(KEEP_CLUSTER) PYTHON=$(BIN)/python tools/kind-e2e.sh

deploy: ## helm upgrade --install on the current context; rolls back on failure (RELEASE, NAMESPACE, HELM_ARGS)
	RELEASE=$(RELEASE) NAMESPACE=$(NAMESPACE) DRY_RUN=$(DRY_RUN) tools/helm-deploy.sh install

upgrade: ## helm upgrade an installed release; a failed rollout rolls back (HELM_ARGS='--set ...')
	RELEASE=$(RELEASE) NAMESPACE=$(NAMESPACE) DRY_RUN=$(DRY_RUN) tools/helm-deploy.sh upgrade
