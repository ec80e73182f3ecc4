# Thin aliases for the nox sessions and the launcher. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
DIR ?= $(CURDIR)
FILTER ?=
NOX := $(VENV)/bin/nox
KERASTACK := $(VENV)/bin/python -m kerastack

.DEFAULT_GOAL := help
.PHONY: help venv engine run run-gpu check check-gpu test unit lint matrix tags lock build smoke publish changes clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: DIR=folder to mount (run), FILTER='tf=2.21 variant=cpu' (build/smoke/publish)"

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet nox uv -e .
	@touch $@

venv: $(VENV)/.ready ## create .venv with nox and the pipeline

engine: venv ## install and start the Docker engine and buildx if missing (as root)
	$(KERASTACK) engine

run: venv ## JupyterLab (CPU) on DIR (default: this folder) at http://localhost:8888
	@ref=$$($(KERASTACK) image --variant cpu) && scripts/launch --image "$$ref" --pull never --dir "$(DIR)"

run-gpu: venv ## JupyterLab (GPU) on DIR; the host needs the NVIDIA Container Toolkit
	@ref=$$($(KERASTACK) image --variant gpu) && scripts/launch --gpu --image "$$ref" --pull never --dir "$(DIR)"

check: venv ## the CPU image's self-check: versions, TensorFlow's devices, a verdict
	@ref=$$($(KERASTACK) image --variant cpu) && scripts/launch --check --image "$$ref" --pull never

check-gpu: venv ## the same for the GPU image with the GPU flags; non-zero when TensorFlow sees no GPU
	@ref=$$($(KERASTACK) image --variant gpu) && scripts/launch --check --gpu --image "$$ref" --pull never

test: venv ## lint, unit and integration tests against the real engine (installs it as root)
	$(NOX) -s tests

unit: venv ## unit tests only (no Docker)
	$(NOX) -s unit

lint: venv ## ruff, hadolint, shellcheck, workflow checks
	$(NOX) -s lint

matrix: venv ## show the build matrix
	$(NOX) -s matrix -- $(FILTER)

tags: venv ## show which tags move and which never do
	$(NOX) -s tags -- $(FILTER)

lock: venv ## relock dependencies per cell (needs PyPI)
	$(NOX) -s lock -- $(FILTER)

build: venv ## build the matrix (FILTER selects cells)
	$(NOX) -s build-matrix -- $(FILTER)

smoke: venv ## smoke-test built images (FILTER selects cells)
	$(NOX) -s smoke -- $(FILTER)

publish: venv ## push images that passed smoke tests (FILTER selects cells)
	$(NOX) -s publish -- $(FILTER)

changes: venv ## packages changed since the previous TensorFlow release (FILTER selects cells)
	$(NOX) -s changes -- $(FILTER)

clean: ## remove .venv, .nox and reports (images stay)
	rm -rf $(VENV) .nox reports
