# Transaction categorisation pipeline. `make all` brings the stack up; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA := .data
ML_API_PORT ?= 8000
export ML_API_URL ?= http://127.0.0.1:$(ML_API_PORT)

.PHONY: all install test test-unit lint bench-batch bench-stream down clean status logs composecheck

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,airflow]"
	touch $(STAMP)

## install: create .venv with the project and its test dependencies
install: $(STAMP)

## test: everything, from nothing (venv, embedded PostgreSQL, Kafka, the ML API are started by fixtures)
test: $(STAMP)
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit tests/ml_api

lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline ml_api dags tests
	$(VENV)/bin/mypy

## all: the whole stack (docker compose when a Docker engine answers, else native under
## supervisord), then the DAG on data/transactions.csv and the same file replayed through Kafka
all: $(STAMP)
	$(PY) -m pipeline.dev.stack all

## status: each service up/down with its address, the Airflow login, the stored counts
status: $(STAMP)
	$(PY) -m pipeline.dev.stack status

## logs: the end of every service's log
logs: $(STAMP)
	$(PY) -m pipeline.dev.stack logs

## down: stop every service, keep the data (.data/)
down: $(STAMP)
	$(PY) -m pipeline.dev.stack down

## clean: stop every service and delete .data/
clean: $(STAMP)
	$(PY) -m pipeline.dev.stack clean

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
