# Every target creates the venv it needs; nothing else has to be installed
# beforehand but python3 (3.11+) with venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test unit conformance lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## make demo: the support report, then an echo server and client on io_uring
demo: $(STAMP)
	$(PY) -m trio_uring
	$(PY) examples/echo.py

## make test: lint, types, our tests, and trio's own suite on io_uring vs stock
test: $(STAMP) lint typecheck unit conformance

unit: $(STAMP)
	$(PY) -m pytest -q tests

conformance: $(STAMP)
	$(PY) tests/conformance/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check trio_uring tests examples
	$(VENV)/bin/ruff format --check trio_uring

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict trio_uring

clean:
	rm -rf $(VENV) build *.egg-info
