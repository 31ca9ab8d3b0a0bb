# simwatch — every target sets up what it needs; `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.installed-stamp
LOCK := requirements.lock
export KAFKA_IMPL ?= apache

.PHONY: setup system-deps lock up down demo test test-tansu test-unit test-deep test-cluster test-faults bench lint fmt schemas clean

setup: $(STAMP)

# Installs exactly the pinned, hash-checked set of requirements.lock, then the project itself
# without dependencies; `pip check` fails when the lock no longer satisfies pyproject.toml
# (run `make lock`).
$(STAMP): pyproject.toml setup.py services/usage_monitor/adapters/_records.c $(LOCK)
	@command -v python3.11 >/dev/null || command -v python3 >/dev/null || { echo "python 3.11 is required"; exit 1; }
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

# Re-resolve requirements.lock (Python 3.11, Linux x86_64; with the dev tools) and its
# runtime subset requirements-runtime.lock (what the Docker image installs, the same pins)
# after a change to pyproject.toml's dependencies; existing pins are kept where they still
# fit. `make lock LOCK_ARGS=--upgrade` moves every pin to the newest release allowed.
UV_COMPILE := .venv/bin/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
  --python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" -q
lock:
	test -x .venv/bin/uv || { test -x $(PY) || python3 -m venv .venv; $(PY) -m pip install -q "uv>=0.9,<1"; }
	$(UV_COMPILE) --extra dev -o $(LOCK) $(LOCK_ARGS)
	$(UV_COMPILE) -c $(LOCK) -o requirements-runtime.lock

# redis-server and prometheus from Debian's packages, when missing (root only).
system-deps:
	scripts/system-deps.sh

up: setup
	scripts/stack.sh up

down:
	scripts/stack.sh down

demo: setup
	scripts/demo.sh

lint: setup
	.venv/bin/ruff check services libs tests scripts bench
	.venv/bin/ruff format --check services libs tests scripts bench
	.venv/bin/mypy
	.venv/bin/lint-imports

fmt: setup
	.venv/bin/ruff format services libs tests scripts bench
	.venv/bin/ruff check --fix services libs tests scripts bench

schemas: setup
	$(PY) -m simwatch_contracts.schemas

# Lint, then the whole suite against the Kafka and Redis it starts (and stops again,
# unless they were already running).
test: setup system-deps lint
	scripts/with-stack.sh .venv/bin/pytest $(PYTEST_ARGS)

# The integration suite on the Tansu broker (CI runs it on Apache Kafka).
test-tansu: setup system-deps
	KAFKA_IMPL=tansu KAFKA_PORT=19092 REDIS_PORT=16379 TEST_REDIS_URL=redis://127.0.0.1:16379/15 \
	  KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 scripts/with-stack.sh .venv/bin/pytest tests/integration $(PYTEST_ARGS)

test-unit: setup system-deps
	.venv/bin/pytest tests/unit $(PYTEST_ARGS)

# For releases: the lifecycle against the reference model with ten times the examples.
test-deep: setup
	.venv/bin/pytest tests/unit -m deep $(PYTEST_ARGS)

# The integration suite with every service on a three-master Redis Cluster (CI runs it too).
test-cluster: setup system-deps
	REDIS_CLUSTER=3 REDIS_PORT=17000 TEST_REDIS_URL=redis+cluster://127.0.0.1:17000 \
	  scripts/with-stack.sh .venv/bin/pytest tests/integration $(PYTEST_ARGS)

# Only the fault-injection tests (each also runs alone: make test-faults PYTEST_ARGS="-k sigstop").
test-faults: setup system-deps
	scripts/with-stack.sh .venv/bin/pytest -m fault $(PYTEST_ARGS)

bench: setup
	scripts/with-stack.sh $(PY) -m bench $(BENCH_ARGS)

clean:
	scripts/stack.sh down || true
	rm -rf .local/stack .pytest_cache .mypy_cache .ruff_cache
