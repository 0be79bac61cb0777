# `make run` and `make test` each set up what they need on a fresh machine (Python 3.11+).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test check bench

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(PY) -m app

# The browser tests need Debian's Chromium; install it when we can (root with apt).
/usr/bin/chromium:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "no /usr/bin/chromium: browser tests will be skipped"; fi

check: $(VENV)/.installed
	$(VENV)/bin/mypy
	$(VENV)/bin/ruff check app tests

test: $(VENV)/.installed /usr/bin/chromium check
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) -m bench
