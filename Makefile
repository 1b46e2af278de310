# Transaction categorisation pipeline. `make all` brings the stack up; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA := .data
ML_API_PORT ?= 8000
export ML_API_URL ?= http://127.0.0.1:$(ML_API_PORT)

.PHONY: all install test test-unit lint lint-imports bench-batch bench-stream down clean status logs \
	composecheck kafka-up kafka-down

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,airflow]"  # dev: the tests and devstack/ (not in the wheel)
	touch $(STAMP)

## install: create .venv with the project and its test dependencies
install: $(STAMP)

## test: everything, from nothing (venv, embedded PostgreSQL, Kafka, the ML API are started by fixtures)
test: $(STAMP) lint-imports
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

## all: the whole stack (docker compose when a Docker engine answers, else native under
## supervisord), then the DAG on data/transactions.csv and the same file replayed through Kafka
all: $(STAMP)
	$(PY) -m devstack stack all

## status: each service up/down with its address, the Airflow login, the stored counts
status: $(STAMP)
	$(PY) -m devstack stack status

## logs: the end of every service's log
logs: $(STAMP)
	$(PY) -m devstack stack logs

## down: stop every service, keep the data (.data/)
down: $(STAMP)
	$(PY) -m devstack stack down

## clean: stop every service and delete .data/
clean: $(STAMP)
	$(PY) -m devstack stack clean

## composecheck: validate docker-compose.yml with compose-go, without a Docker engine
composecheck:
	go -C tools/composecheck build -o ../bin/composecheck .
	tools/bin/composecheck -f docker-compose.yml -env-file .env.example

## bench-batch: rows/s end to end for the 10k file and a generated 1M-row file, with peak memory
bench-batch: $(STAMP)
	$(PY) bench/bench_batch.py

## bench-stream: sustained events/s of one consumer on 1M preloaded events, and latency at 2,000/s
bench-stream: $(STAMP)
	$(PY) bench/bench_stream.py
