# The two commands of the quickstart:
#   make run    set up the virtualenv and run the main experiment (Last.fm 2K, every component)
#   make test   set up the virtualenv (and PostgreSQL, Java where missing) and run lint + the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
EXPERIMENT ?= experiments/lastfm2k.yaml
COMPONENTS ?=

.PHONY: setup run test lint benchmark server serve clean-outputs

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

run: setup
	scripts/pipeline/run.sh --experiment $(EXPERIMENT) $(if $(COMPONENTS),--components $(COMPONENTS))

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	bash scripts/ensure_system_deps.sh
	$(PY) -m pytest

benchmark: setup
	$(PY) -m benchmarks.run_benchmarks

serve: setup
	$(PY) -m encore.serving

clean-outputs:
	rm -rf outputs mlruns
