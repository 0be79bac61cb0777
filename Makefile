# `make run` and `make test` each set up what they need on a fresh machine (Python 3.11+).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test check bench screenshot

# The service alone for `make run`; the test tools (Playwright, schemathesis, ...) only for tests.
$(VENV)/.service: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed: $(VENV)/.service
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.service
	$(PY) -m app

# The browser tests need Debian's Chromium; install it when we can (root with apt).
/usr/bin/chromium:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "no /usr/bin/chromium: browser tests will be skipped"; fi

check: $(VENV)/.installed
	$(VENV)/bin/mypy
	$(VENV)/bin/ruff check app tests bench

test: $(VENV)/.installed /usr/bin/chromium check
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) -m bench

# Renders docs/screenshot.png (the README's picture) with the browser test that draws it.
screenshot: $(VENV)/.installed /usr/bin/chromium
	SCREENSHOT_PATH=docs/screenshot.png $(PY) -m pytest -q tests/browser/test_page.py -k screenshot
