# Two commands do all the set-up on a fresh clone (only Python 3.11 and make needed):
#   make run    install, simulate data, materialize every asset, start the broker and the real-time
#               services, serve `dagster dev` on 127.0.0.1:3000 (`make stop` stops the background part)
#   make test   install and run the test suite
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export MLOPS_DATA_DIR ?= $(CURDIR)/.data
export DAGSTER_HOME ?= $(MLOPS_DATA_DIR)/dagster
DAGSTER_PORT ?= 3000

.PHONY: install run stop materialize dev test validate bench clean broker-start broker-stop services-start services-stop

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

# Materialize the whole asset graph as a user's CI would (RUN_CONFIG=file.yaml for run config).
materialize: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster asset materialize -m mlops_assets.definitions --select '*' $(if $(RUN_CONFIG),-c $(RUN_CONFIG))

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(DAGSTER_PORT)

run: materialize broker-start services-start dev

stop: services-stop broker-stop

services-start: install
	$(BIN)/mlops-assets services start

services-stop: install
	$(BIN)/mlops-assets services stop

validate: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster definitions validate -w workspace.yaml

test: install
	$(BIN)/python -m pytest mlops_assets_tests $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/bench_features.py
	$(BIN)/python benchmarks/bench_scoring.py

# The embedded Kafka-protocol broker (data in $(MLOPS_DATA_DIR)/kafka), with the platform's topics.
broker-start: install
	$(BIN)/mlops-assets broker start

broker-stop: install
	$(BIN)/mlops-assets broker stop

clean:
	rm -rf $(MLOPS_DATA_DIR)
