# Liên thông Hub: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# All of the hub's state lives under LIENTHONG_HOME; Airflow's own state beside it.
LIENTHONG_HOME ?= $(CURDIR)/.lienthong
# absolute: Airflow refuses a relative SQLite path under AIRFLOW_HOME
export LIENTHONG_HOME := $(abspath $(LIENTHONG_HOME))
export AIRFLOW_HOME ?= $(LIENTHONG_HOME)/airflow
export AIRFLOW_CONFIG ?= $(CURDIR)/airflow.cfg
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False

.PHONY: setup demo test test-fast bench lint airflow-init airflow clean

setup: $(VENV)/.installed

# Re-installs when the project's dependencies change. constraints.txt pins every package
# (Airflow 3.3 included) so a fresh machine gets exactly what the tests ran with.
$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

demo: setup
	$(BIN)/lienthong demo

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

bench: setup
	$(BIN)/python benchmarks/bench_signing.py
	$(BIN)/python benchmarks/bench_audit.py
	$(BIN)/python benchmarks/bench_exchange.py
	$(BIN)/python benchmarks/bench_tthc_sync.py
	$(BIN)/python benchmarks/bench_push.py
	$(BIN)/python benchmarks/bench_results.py
	$(BIN)/python benchmarks/bench_audit_query.py

lint: setup
	$(BIN)/ruff check .

# Airflow, embedded (SQLite, LocalExecutor): see docs/airflow.md
airflow-init: setup
	$(BIN)/airflow db migrate
	$(BIN)/lienthong keys init

# UI and API at http://127.0.0.1:8080; the admin password is printed on first start.
# standalone starts its components as plain `airflow`, so the venv's bin goes first on PATH.
airflow: airflow-init
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/airflow standalone

clean:
	rm -rf $(LIENTHONG_HOME) .pytest_cache
