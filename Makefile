# Transaction categorisation pipeline. `make all` brings the stack up; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
DATA := .data
ML_API_PORT ?= 8000
export ML_API_URL ?= http://127.0.0.1:$(ML_API_PORT)
# uv at the version uv.lock pins for itself (the Dockerfile reads the same line).
UV_VERSION = $(shell sed -n '/^name = "uv"$$/{n;s/^version = "\(.*\)"$$/\1/p;}' uv.lock)
LOCKED := $(VENV)/requirements.lock.txt
TOXIPROXY := tools/bin/toxiproxy/server

.PHONY: all install lock lock-upgrade test test-unit lint lint-imports bench bench-batch bench-stream \
	down clean status logs composecheck kafka-up kafka-down chaos toxiproxy

$(UV):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "uv==$(UV_VERSION)"

# Every third-party package at the version uv.lock pins, hashes checked (--locked: stop when
# pyproject.toml changed since the lock: run `make lock`), then the project itself, editable,
# without resolving anything again. The Dockerfile installs the same lock. Bytecode is compiled
# at install (as pip does in the image): where PYTHONDONTWRITEBYTECODE is set, every process
# would otherwise compile its imports from source at each start (~4 s for a consumer).
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) export --quiet --locked --all-extras --no-emit-project --output-file $(LOCKED)
	$(UV) pip install --quiet --python $(PY) --compile-bytecode --require-hashes -r $(LOCKED)
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $(STAMP)

## install: .venv with the project, Airflow and the test tools, exactly as uv.lock pins them
install: $(STAMP)

## lock: re-resolve uv.lock after a change of pyproject.toml (keeps every pin that still fits)
lock: | $(UV)
	$(UV) lock --python $(PY)

## lock-upgrade: re-resolve uv.lock to the newest versions pyproject.toml allows
lock-upgrade: | $(UV)
	$(UV) lock --python $(PY) --upgrade

## test: everything, from nothing (venv, embedded PostgreSQL, Kafka, the ML API are started by fixtures)
test: $(STAMP) lint-imports $(TOXIPROXY)
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit tests/ml_api

## lint: ruff, mypy (product, devstack, tests, dags, bench) and the import-linter contracts
lint: $(STAMP) lint-imports
	$(VENV)/bin/ruff check pipeline ml_api devstack dags tests bench
	$(VENV)/bin/mypy

## lint-imports: the layers of pyproject.toml's [tool.importlinter] contracts, kept
lint-imports: $(STAMP)
	$(VENV)/bin/lint-imports

## kafka-up: the development Kafka broker; the last line printed is its host:port
kafka-up: $(STAMP)
	@$(PY) -m devstack kafka up

## kafka-down: stop the development Kafka broker (data kept in .data/kafka)
kafka-down: $(STAMP)
	$(PY) -m devstack kafka down

# $(call stack,COMMAND): docker compose when a Docker engine answers (devstack/compose.py: stdlib
# only, so the host's Python runs it and no virtualenv is built), else the native stack, which
# needs .venv (Airflow included). STACK_BACKEND=native|docker forces one.
define stack
	@backend="$$($(PYTHON) -m devstack.compose backend)" || exit 1; \
	if [ "$$backend" = docker ]; then $(PYTHON) -m devstack.compose $(1); \
	else { $(MAKE) --no-print-directory -q $(STAMP) || $(MAKE) --no-print-directory $(STAMP); } \
		&& STACK_BACKEND=native $(PY) -m devstack stack $(1); fi
endef

## all: the whole stack (docker compose when a Docker engine answers, else native under
## supervisord), then the DAG on data/transactions.csv and the same file replayed through Kafka
all:
	$(call stack,all)

## status: each service up/down with its address, the Airflow login, the stored counts
status:
	$(call stack,status)

## logs: the end of every service's log
logs:
	$(call stack,logs)

## down: stop every service, keep the data (.data/, or the compose volumes)
down:
	$(call stack,down)

## clean: stop every service and delete the data (.data/, or the compose volumes)
clean:
	$(call stack,clean)

## chaos: the fault matrix (25-30 minutes): real PostgreSQL, Kafka and the ML API behind
## Toxiproxy, every fault of issue 9, the exact final state checked; one table, the same as
## JSON in bench/out/chaos.json, exit 1 if a scenario fails. CHAOS_ARGS="--only NAME…|--list"
chaos: $(STAMP) $(TOXIPROXY)
	$(PY) -m bench.chaos $(CHAOS_ARGS)

## toxiproxy: build the Toxiproxy server (Go, once) into tools/bin/toxiproxy/
toxiproxy: $(TOXIPROXY)

$(TOXIPROXY): | $(STAMP)
	$(PY) -m devstack toxiproxy build

## composecheck: validate docker-compose.yml with compose-go, without a Docker engine
composecheck:
	go -C tools/composecheck build -o ../bin/composecheck .
	tools/bin/composecheck -f docker-compose.yml -env-file .env.example

## bench: every stage alone (CSV parse, validation, ML API, COPY upsert) and both pipelines end
## to end (batch 100k and 1M rows, stream at 2,000 and 20,000 events/s) in one run: one table,
## charts in bench/out/. BENCH_ARGS="--big" adds the 10M-row file, "--consumers 1,2,3" more consumers
bench: $(STAMP)
	$(PY) bench/bench_all.py $(BENCH_ARGS)

## bench-batch: rows/s end to end for the 10k file and a generated 1M-row file, with peak memory
bench-batch: $(STAMP)
	$(PY) bench/bench_batch.py

## bench-stream: sustained events/s of one consumer on 1M preloaded events, and latency at 2,000/s
bench-stream: $(STAMP)
	$(PY) bench/bench_stream.py
