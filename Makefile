# The model serving stack. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
MODEL_ROOT ?= models
DEFAULT_MODEL := $(MODEL_ROOT)/digits/1/model.keras
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help setup model run run-inference test bench docs clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/.installed: pyproject.toml
	@tools/system-packages.sh python3-venv:python3-venv
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[inference,train,dev,bench]"
	@touch $@

setup: $(BIN)/.installed ## Create .venv with everything to run, train and test (idempotent)

$(DEFAULT_MODEL): | $(BIN)/.installed
	$(BIN)/python tools/train_digits.py --out $(MODEL_ROOT)/digits --version 1

model: $(DEFAULT_MODEL) ## Train the default digits model into models/digits/1 (offline, seconds)

run: run-inference ## Start the stack on 127.0.0.1:8080 (PORT=...) with the default model; Ctrl-C stops

run-inference: setup model ## Start the inference service alone on 127.0.0.1:8080 (PORT=...)
	@echo "inference on http://127.0.0.1:$(PORT)  (Ctrl-C stops)"
	@echo "try: curl -s -d @examples/digit-0.json http://127.0.0.1:$(PORT)/v1/models/digits:predict"
	INFERENCE_BIND=127.0.0.1:$(PORT) INFERENCE_MODEL_ROOT=$(MODEL_ROOT) \
		exec $(BIN)/gunicorn -c services/inference/gunicorn.conf.py

test: setup ## Run every test (unit, integration, end-to-end) against real servers
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup ## Benchmark: raw model limit, naive and tuned Flask, the service (<10 min) -> reports/bench.md
	@tools/system-packages.sh wrk:wrk
	$(BIN)/python -m bench $(BENCH_ARGS)

docs: setup ## Regenerate docs/configuration.md from the settings declared in code
	$(BIN)/python -m tools.configuration_doc > docs/configuration.md

clean: ## Remove the virtualenv, caches and reports (keeps trained models)
	rm -rf $(VENV) .pytest_cache reports
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
