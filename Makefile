# The two commands of the quickstart:
#   make run    set up the virtualenv and run the main experiment (Last.fm 2K, every component)
#   make test   set up the virtualenv (and PostgreSQL, Java where missing) and run lint + the whole test suite
# `make help` lists every target.
VENV ?= .venv
PY := $(VENV)/bin/python
EXPERIMENT ?= experiments/lastfm2k.yaml
COMPONENTS ?=
.DEFAULT_GOAL := setup

.PHONY: help setup run test test-fast lint benchmark serve clean-outputs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

setup: $(VENV)/.installed  ## create the virtualenv with the pinned dependencies and an editable Encore

$(VENV)/.installed: requirements.txt requirements-dev.txt setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

run: setup  ## run the main experiment (EXPERIMENT=..., COMPONENTS=a,b to choose)
	scripts/pipeline/run.sh --experiment $(EXPERIMENT) $(if $(COMPONENTS),--components $(COMPONENTS))

lint: setup  ## ruff on the whole repository
	$(VENV)/bin/ruff check .

test: setup lint  ## the one CI command: lint + every test (unit, pipeline, realdata, spark, integration, packaging)
	bash scripts/ensure_system_deps.sh
	$(PY) -m pytest

test-fast: setup  ## the unit tests only (-m unit: no pipeline, real data, Spark, services or wheel build), a few minutes
	$(PY) -m pytest -m unit -q

benchmark: setup  ## the benchmarks (writes benchmarks/results/)
	$(PY) -m benchmarks.run_benchmarks

serve: setup  ## the recommendation service (settings from .env)
	$(PY) -m encore.serving

clean-outputs: setup  ## remove the output folders none of the last 3 runs of each experiment used (KEEP=n)
	$(PY) -m encore.pipeline clean --keep $(or $(KEEP),3)
