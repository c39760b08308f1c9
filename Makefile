# Every target creates the venv it needs; nothing else has to be installed
# beforehand but python3 (3.11+) with venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
BENCH_STAMP := $(VENV)/.installed-bench-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DOCS_STAMP := $(VENV)/.installed-docs-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test unit stress conformance lint typecheck docs clean bench bench-quick test-profiles profiles-ci test-kernels test-kernels-smoke

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# the benchmarks' extras (uvloop, h11, matplotlib) on top of the test venv
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# Sphinx and MyST on top of the test venv
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,docs]'
	touch $(DOCS_STAMP)

## make demo: the support report, then an echo server and client on io_uring
demo: $(STAMP)
	$(PY) -m trio_uring
	$(PY) examples/echo.py

## make test: lint, types, the docs (warning-free), our tests, and trio's own suite on io_uring vs stock,
## then the kernel profiles' CI set (profiles-ci, below) and the real-kernel VM smoke run (test-kernels-smoke)
test: $(STAMP) lint typecheck docs unit conformance profiles-ci test-kernels-smoke

unit: $(STAMP)
	$(PY) -m pytest -q tests

## make stress: the reliability tests in their long configuration (ten times the
## connections, durations and examples; docs/reliability.md), figures printed
stress: $(STAMP)
	TRIO_URING_STRESS=10 $(PY) -m pytest -q -s tests/test_reliability_load.py \
		tests/test_reliability_faults.py tests/test_reliability_input.py tests/test_socket.py tests/test_stream.py

conformance: $(STAMP)
	$(PY) tests/conformance/run.py

# Kernel profiles (docs/kernel-support.md): trio_uring as if on an older kernel.
PROFILES ?= 5.15 5.19 6.1 6.8
PROFILE_SMOKE := tests/test_kernel_features.py tests/test_ring.py tests/test_manager.py tests/test_socket.py \
	tests/test_stream.py tests/test_lowlevel.py

## make test-profiles: our whole suite and trio's own suite under each kernel profile (PROFILES=...)
test-profiles: $(STAMP)
	set -e; for p in $(PROFILES); do \
		echo "== kernel profile $$p"; \
		TRIO_URING_KERNEL=$$p $(PY) -m pytest -q tests; \
		TRIO_URING_KERNEL=$$p $(PY) tests/conformance/run.py; \
	done

## make profiles-ci: what make test runs of the profiles: everything under 5.15 (the floor, where every
## fallback is taken: our suite and trio's), and the socket/ring core under 5.19, 6.1 and 6.8
profiles-ci: $(STAMP)
	TRIO_URING_KERNEL=5.15 $(PY) -m pytest -q tests
	TRIO_URING_KERNEL=5.15 $(PY) tests/conformance/run.py
	set -e; for p in 5.19 6.1 6.8; do \
		echo "== kernel profile $$p"; \
		TRIO_URING_KERNEL=$$p $(PY) -m pytest -q $(PROFILE_SMOKE); \
	done

## make test-kernels: Debian's real kernels (5.10, 6.1, 6.12) from its package registry,
## each booted under qemu with this machine's files shared, running python -m trio_uring,
## our suite and trio's inside; a table at the end (docs/kernel-support.md).  Slow under
## emulation (TCG): one kernel, KERNELS=6.1; a few files, ARGS='-- tests/test_ring.py'
test-kernels: $(STAMP)
	$(PY) tools/test_kernels.py $(KERNELS) $(ARGS)

## make test-kernels-smoke: the bounded part of it that `make test` runs (6.1: the report
## and a few quick test files)
test-kernels-smoke: $(STAMP)
	$(PY) tools/test_kernels.py --smoke

lint: $(STAMP)
	$(VENV)/bin/ruff check trio_uring tests examples
	$(VENV)/bin/ruff format --check trio_uring

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict trio_uring

## make docs: the Sphinx HTML (docs/_build/html/index.html); a warning fails the build
docs: $(DOCS_STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -E -q -b html docs docs/_build/html

## make bench: stock trio vs trio_uring side by side (docs/benchmarks.md): a table,
## benchmarks/results/latest.json and docs/_static/benchmarks.png
bench: $(BENCH_STAMP)
	$(PY) benchmarks/run.py

## make bench-quick: the same harness in a tiny configuration (a smoke run; numbers mean nothing)
bench-quick: $(BENCH_STAMP)
	$(PY) benchmarks/run.py --quick

clean:
	rm -rf $(VENV) build *.egg-info docs/_build
