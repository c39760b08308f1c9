# Every target creates the venv it needs; nothing else has to be installed
# beforehand but python3 (3.11+) with venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
BENCH_STAMP := $(VENV)/.installed-bench-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
DOCS_STAMP := $(VENV)/.installed-docs-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test unit stress conformance lint typecheck docs clean bench bench-quick test-profiles profiles-ci
.PHONY: test-versions test-matrix conformance-matrix anyio-matrix test-arm64 bench-latency bench-latency-quick
.PHONY: test-kernels test-kernels-smoke conformance-ci

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
## then the kernel profiles' CI set (profiles-ci, below), the real-kernel VM smoke run (test-kernels-smoke),
## and the Python/trio/anyio versions' CI set (test-versions)
test: $(STAMP) lint typecheck docs unit conformance-ci profiles-ci test-kernels-smoke
	$(MAKE) test-versions

unit: $(STAMP)
	$(PY) -m pytest -q tests

## make stress: the reliability tests in their long configuration (ten times the
## connections, durations and examples; docs/reliability.md), figures printed
stress: $(STAMP)
	TRIO_URING_STRESS=10 $(PY) -m pytest -q -s tests/test_reliability_load.py \
		tests/test_reliability_faults.py tests/test_reliability_input.py tests/test_socket.py tests/test_stream.py

conformance: $(STAMP)
	$(PY) tests/conformance/run.py

## make conformance-ci: trio's suite once on stock trio, then on trio_uring natively and under
## the 5.15 kernel profile (every fallback taken), each compared with the stock run
conformance-ci: $(STAMP)
	$(PY) tests/conformance/run.py --profiles native,5.15

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

## make profiles-ci: what make test runs of the profiles: our suite under 5.15 (the floor, where every
## fallback is taken; trio's suite under 5.15 is in conformance-ci), and the socket/ring core under
## 5.19, 6.1 and 6.8.  Left to the native run (make test-profiles runs them under every profile): the
## benchmark harness's smoke runs, and the launcher/workers/pytest-plugin tests, which spend their
## time starting processes and pytest sessions, not on the kernel paths a profile changes
PROFILE_CI_SKIP := --ignore-glob='tests/test_bench*.py' --ignore=tests/test_pytest_faults.py \
	--ignore=tests/test_pytest_plugin.py --ignore=tests/test_launcher.py --ignore=tests/test_workers.py \
	--ignore=tests/test_deploy.py
profiles-ci: $(STAMP)
	TRIO_URING_KERNEL=5.15 $(PY) -m pytest -q tests $(PROFILE_CI_SKIP)
	set -e; for p in 5.19 6.1 6.8; do \
		echo "== kernel profile $$p"; \
		TRIO_URING_KERNEL=$$p $(PY) -m pytest -q $(PROFILE_SMOKE); \
	done

## make test-kernels: Debian's real kernels (5.10, 6.1, 6.12) from its package registry,
## each booted under qemu from an initramfs of this venv and checkout, running python -m trio_uring,
## our suite's kernel set and trio's suite on trio_uring inside; a table at the end
## (docs/kernel-support.md).  Slow under emulation (TCG): one kernel, KERNELS=6.1; a few
## files, ARGS='-- tests/test_ring.py'; all of our suite, ARGS='-- tests'
test-kernels: $(STAMP)
	$(PY) tools/test_kernels.py $(KERNELS) $(ARGS)

## make test-kernels-smoke: the bounded part of it that `make test` runs (6.1, 6.12, 5.10: the report
## and a few quick test files)
test-kernels-smoke: $(STAMP)
	$(PY) tools/test_kernels.py --smoke

lint: $(STAMP)
	$(VENV)/bin/ruff check trio_uring tests examples tools
	$(VENV)/bin/ruff format --check trio_uring tools

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict trio_uring
	cd tools && $(abspath $(VENV))/bin/mypy --strict test_kernels.py guest_initramfs.py kernel_guest.py

## make docs: the Sphinx HTML (docs/_build/html/index.html); a warning fails the build
docs: $(DOCS_STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -E -q -b html docs docs/_build/html

## make bench: stock trio vs trio_uring side by side (docs/benchmarks.md): a table,
## benchmarks/results/latest.json and docs/_static/benchmarks.png
bench: $(BENCH_STAMP)
	$(PY) benchmarks/run.py
	$(PY) benchmarks/latency.py

## make bench-quick: the same harness in a tiny configuration (a smoke run; numbers mean nothing)
bench-quick: $(BENCH_STAMP)
	$(PY) benchmarks/run.py --quick

## make test-arm64: python -m trio_uring, our suite and trio's on Debian's arm64 kernel under
## qemu-system-aarch64 (full-system TCG; slow); the userland is cached in ~/.cache/trio_uring/arm64.
## ARM64_TESTS / ARM64_TRIO choose the suites (docs/kernel-support.md, "aarch64")
.PHONY: test-arm64
test-arm64:
	.ci/arm64/run.sh
## make bench-compare BEFORE=rev AFTER=rev: trio_uring at two git revisions in one run (echo and
## files, alternated, each beside stock trio): benchmarks/compare_revs.py
.PHONY: bench-compare
bench-compare: $(BENCH_STAMP)
	$(PY) benchmarks/compare_revs.py $(BEFORE) $(AFTER) $(ARGS)

## make bench-latency: only the latency cases of make bench (docs/benchmarks.md, "Latency"):
## benchmarks/results/latency.json and docs/_static/latency.png
bench-latency: $(BENCH_STAMP)
	$(PY) benchmarks/latency.py

## make bench-latency-quick: the latency harness in a tiny configuration (a smoke run)
bench-latency-quick: $(BENCH_STAMP)
	$(PY) benchmarks/latency.py --quick

clean:
	rm -rf $(VENV) build *.egg-info docs/_build
	rm -rf .venv-matrix

## make test-versions: CI's reduced version matrix (docs/quickstart.md, "Supported versions"):
## the typing check of examples/ and tests/typing, the version-sensitive files on Python 3.12 and
## 3.13 (the whole suite on 3.11 is `unit`; `make test-matrix` runs everything on every Python), trio 0.27's own suite on Python 3.13 (`conformance` is trio 0.35
## on 3.11), tests/test_anyio.py on anyio 4.4.0 (`unit` has the newest)
VERSION_SENSITIVE := tests/test_python_versions.py,tests/test_fileops.py,tests/test_path.py,tests/test_files.py,tests/test_lowlevel.py,tests/test_stream.py,tests/test_trio_versions.py,tests/test_typing_usage.py,tests/test_anyio.py
test-versions: $(STAMP)
	$(VENV)/bin/mypy --strict examples tests/typing
	$(PY) tests/matrix/pythons.py --pythons 3.12,3.13 --tests $(VERSION_SENSITIVE)
	$(PY) tests/matrix/trios.py --trios 0.27.0 --python 3.13
	$(PY) tests/matrix/anyios.py --anyios 4.4.0

## make test-matrix: our suite and mypy --strict of examples/ and tests/typing on
## every Python 3.11-3.13 found (python3.X on PATH, then pyenv's versions), a venv each
test-matrix:
	$(PYTHON) tests/matrix/pythons.py

## make conformance-matrix: trio's own suite, stock vs trio_uring, for each trio
## 0.27-0.35 beside trio_uring (docs/conformance.md)
conformance-matrix:
	$(PYTHON) tests/matrix/trios.py

## make anyio-matrix: tests/test_anyio.py on anyio 4.4.0 and the newest
anyio-matrix:
	$(PYTHON) tests/matrix/anyios.py

## make anyio-suite: anyio's own tests/test_fileio.py (from the sdist of the installed
## anyio, fetched from PyPI) with trio_uring installed: anyio's file API through the hook
anyio-suite: $(STAMP)
	$(PY) tests/anyio_suite/run.py

.PHONY: anyio-suite
test: anyio-suite

## make peer-faults: other projects' own test suites (trio-websocket, httpcore,
## hypercorn; sdists from PyPI, venvs in ~/.cache/trio_uring_peers) under
## --trio-uring-faults; not in CI (docs/testing.md, "What it found")
.PHONY: peer-faults
peer-faults: $(STAMP)
	$(PY) peers/faults.py

.PHONY: bench-workers bench-startup

## make bench-workers: multi-process echo, 1 vs 2 workers, trio_uring vs stock trio
## (trio_uring.workers; docs/benchmarks.md); add --workers 1,2,4,8 on a bigger machine
bench-workers: $(BENCH_STAMP)
	$(PY) benchmarks/bench_workers.py

## make bench-startup: what the trio-uring run start-up hook costs python -c pass
bench-startup: $(STAMP)
	$(PY) benchmarks/startup.py

# the start-up hook is copied into site-packages at install time (setup.py):
# reinstall when it changes
$(STAMP): setup.py trio_uring/_startup.py
