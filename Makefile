# Thin aliases for the nox sessions and the launcher. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
DIR ?= .
FILTER ?=
REQS ?=
PLATFORM ?=
NOX := $(VENV)/bin/nox
KERASTACK := $(VENV)/bin/python -m kerastack

.DEFAULT_GOAL := help
.PHONY: help venv engine run run-gpu check check-gpu test unit lint matrix tags lock build smoke publish changes clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  Variables: DIR=folder to mount (run), REQS=requirements file to add (run), PLATFORM=linux/amd64 or linux/arm64 to run and check"
	@echo "             (default: the Docker engine's own; another runs under emulation), FILTER='tf=2.21 variant=cpu' (build/smoke/publish)"

$(VENV)/.ready: pyproject.toml requirements/pipeline.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements/pipeline.txt
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

venv: $(VENV)/.ready ## create .venv with nox and the pipeline

engine: venv ## install and start the Docker engine and buildx if missing (as root)
	$(KERASTACK) engine

run: venv ## JupyterLab (CPU) on DIR (default: this folder) at http://localhost:8888; REQS=FILE adds your packages
	@ref=$$($(KERASTACK) image --variant cpu) && scripts/launch --image "$$ref" --pull never --dir "$$LAUNCH_DIR"

# DIR, REQS and PLATFORM reach the launcher through the environment, unexpanded: `$`, `"` or spaces in a
# folder or file name cannot change what is mounted or read, and the launcher checks PLATFORM itself.
run run-gpu: export LAUNCH_DIR = $(value DIR)
run run-gpu check check-gpu: export KERASTACK_REQUIREMENTS = $(value REQS)
run run-gpu check check-gpu: export KERASTACK_PLATFORM = $(value PLATFORM)

run-gpu: venv ## JupyterLab (GPU) on DIR; the host needs the NVIDIA Container Toolkit; REQS=FILE as for run
	@ref=$$($(KERASTACK) image --variant gpu) && scripts/launch --gpu --image "$$ref" --pull never --dir "$$LAUNCH_DIR"

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
