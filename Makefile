# make run: the bot. make test: lint and the test suite. Both build .venv when it is missing
# or older than pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench load models

$(VENV)/.serve: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.serve
	$(PY) -m pip install --quiet -e '.[train,dev]'
	touch $@

run: $(VENV)/.serve
	$(PY) -m bot

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest

# The measurements quoted in benchmarks/results/ (about 17 minutes on 2 cores).
bench: $(VENV)/.dev
	$(PY) -m benchmarks.kneser_ney
	$(PY) -m benchmarks.serve
	$(PY) -m benchmarks.footprint
	$(PY) -m benchmarks.train_throughput
	$(PY) -m benchmarks.ngram_mix

# 1,000 /poem in bursts through the loopback Discord against the bot process (about 2 minutes).
load: $(VENV)/.dev
	$(PY) -m benchmarks.load
