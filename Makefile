# fedchain: `make demo`, `make test`, `make bench` (README Quickstart).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-fast bench lint clean browser browser-deps

$(STAMP): setup.cfg setup.py pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fedchain demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) bench/run_all.py

# Explorer browser tests (tests/explorer_browser_test.py): Debian's chromium + chromedriver, installed
# here when missing (root, or sudo). Selenium is pointed at /usr/bin/chromedriver: nothing is downloaded.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; else \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; fi

browser: $(STAMP) browser-deps
	FEDCHAIN_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/explorer_browser_test.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf .fedchain build *.egg-info */*.egg-info
