# twostage: the two set-up commands of the README, plus developer helpers.
#   make run    create .venv, install twostage with Snakemake, run the default study
#   make test   same .venv, run the test suite

PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export PATH := $(BIN):$(PATH)

.PHONY: run test lint figures report bench clean help compile

help:
	@echo "make run    - install into $(VENV) and run the default study (config/config.yaml)"
	@echo "make test   - install into $(VENV) and run the test suite"
	@echo "make lint   - ruff and snakemake --lint"
	@echo "make figures - redraw figures from results/*/{risk,theory}.nc only"
	@echo "make report - results/report.html: every figure and table with captions (from the aggregated files)"
	@echo "make bench  - speed of every case against a naive loop and the floor (benchmarks/run.py)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: twostage needs Python >= 3.11; '$(PYTHON)' is older (set PYTHON=...)"; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing python3-venv (Debian)"; apt-get update -qq && apt-get install -y -qq python3-venv; \
	  else echo "error: '$(PYTHON) -m venv' is unavailable: install python3-venv"; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,hpc]'
	@touch $(STAMP)

# Byte-compile the package (0.1 s when nothing changed). An editable install leaves no .pyc
# files, and where PYTHONDONTWRITEBYTECODE is set (as on CI) Python never writes them: every
# stage job would then recompile each twostage module it imports (~65 ms per job).
compile: $(STAMP)
	@$(BIN)/python -m compileall -q src

run: compile
	$(BIN)/snakemake --cores all
	@echo; echo "Figures:"; ls -1 results/*/figures/*.png; echo "Tables:"; ls -1 results/*/summary.csv

# pytest caches its assertion-rewritten test modules as .pyc only where Python may write
# bytecode: with PYTHONDONTWRITEBYTECODE set, each of the parallel workers would rewrite every
# test module again (~2 s each); the caches land in tests/__pycache__ (git-ignored).
test: compile
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest

figures: compile
	$(BIN)/snakemake figures --cores all

report: compile
	$(BIN)/snakemake figures --cores all --report results/report.html --report-after-run

bench: compile
	$(BIN)/python benchmarks/run.py

lint: $(STAMP)
	$(BIN)/ruff check src scripts tests
	$(BIN)/snakemake --lint

clean:
	rm -rf results .snakemake
