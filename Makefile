# make run: the bot. make test: lint and the test suite. Both build .venv when it is missing
# or older than pyproject.toml.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint bench load models postgres-server browser

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

# Two workers on two cores (xdist's auto counts the cores this process may use, so one under
# taskset -c 0); a module's tests stay on one worker, sharing its fixtures, and the modules go
# out longest first (tests/module_seconds.json, tests/conftest.py).
test: lint postgres-server browser
	$(PY) -m pytest -n auto --dist loadscope --no-loadscope-reorder

# The tests start their own PostgreSQL server (initdb on a free port) for the settings store;
# the server package comes from Debian where it is missing. Without it those tests skip, and
# fail where POEMBOT_REQUIRE_POSTGRES is set (CI).
postgres-server:
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's postgresql for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends postgresql >/dev/null; \
	  else \
	    echo "no PostgreSQL server and no way to install one: its tests will be skipped"; \
	  fi; \
	fi

# The page's browser test drives Debian's chromium, with a CJK font for the Chinese styles; both
# come from Debian where missing. Without them that test skips, and fails where
# POEMBOT_REQUIRE_BROWSER is set (CI).
browser:
	@if ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi "wenquanyi zen hei"; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium and fonts-wqy-zenhei for the page's browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends chromium fonts-wqy-zenhei >/dev/null; \
	  else \
	    echo "no chromium and no way to install it: the page's browser test will be skipped"; \
	  fi; \
	fi

# The measurements quoted in benchmarks/results/ (about 90 minutes on 2 cores, half of it cells).
bench: $(VENV)/.dev
	$(PY) -m benchmarks.kneser_ney
	$(PY) -m benchmarks.serve
	$(PY) -m benchmarks.footprint
	$(PY) -m benchmarks.train_throughput
	$(PY) -m benchmarks.ngram_mix
	$(PY) -m benchmarks.forms
	$(PY) -m benchmarks.copy_guard
	$(PY) -m benchmarks.page
	$(PY) -m benchmarks.cells
	$(PY) -m benchmarks.readme

# 1,000 /poem in bursts through the loopback Discord against the bot process (about 2 minutes).
load: $(VENV)/.dev
	$(PY) -m benchmarks.load
