# The workflow, executable. `make help` lists the targets.
.DEFAULT_GOAL := check
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Empty: the database the settings give (`database`, ./listener.db by default); DB=path
# chooses another, as --db does.
DB ?=
DB_OPTION := $(if $(DB),--db $(DB))
# Empty: the settings file is found as the CLI finds it (./listener.toml, ~/.config/listener/,
# /etc/listener/), else the built-in defaults, which config/listener.toml documents.
CONFIG ?=
CONFIG_OPTION := $(if $(CONFIG),--config $(CONFIG))

.PHONY: help check install fmt lint typecheck test test-any-day cov run poll-once digest-preview status bench bench-quick model eval-real clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# pip compiles a wheel's modules, not an editable checkout's: without this, every command
	@# compiles ~90 modules again when PYTHONDONTWRITEBYTECODE is set (0.1 s of a warm poll).
	$(BIN)/python -m compileall -q listener
	touch $(STAMP)

install: $(STAMP)  ## venv + editable install with the dev tools

check: lint typecheck test  ## everything CI runs

fmt: $(STAMP)  ## ruff format + ruff check --fix
	$(BIN)/ruff format listener tests bench setup.py
	$(BIN)/ruff check --fix listener tests bench setup.py

lint: $(STAMP)  ## ruff format --check + ruff check
	$(BIN)/ruff format --check listener tests bench setup.py
	$(BIN)/ruff check listener tests bench setup.py

typecheck: $(STAMP)  ## mypy --strict on listener/
	$(BIN)/mypy

test: $(STAMP)  ## the whole suite (hermetic: loopback servers, temp files); PYTEST_ARGS=... adds options
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-any-day: $(STAMP)  ## the suite a year ahead at 23:30, in two time zones far from UTC (as CI runs it)
	TZ=Pacific/Kiritimati $(BIN)/pytest -q --clock "$$(date -d '+1 year' +%F)T23:30" $(PYTEST_ARGS)
	TZ=America/Adak $(BIN)/pytest -q --clock "$$(date -d '+1 year' +%F)T23:30" $(PYTEST_ARGS)

cov: $(STAMP)  ## coverage run -m pytest && coverage report
	$(BIN)/coverage run -m pytest -q -p no:randomly && $(BIN)/coverage report --skip-covered

run: $(STAMP)  ## the daemon, with the settings file the CLI finds (CONFIG=... to choose) and its database (DB=...)
	$(BIN)/listener $(CONFIG_OPTION) $(DB_OPTION) run

poll-once: $(STAMP)  ## one poll pass over every feed, then exit
	$(BIN)/listener $(CONFIG_OPTION) $(DB_OPTION) poll --all

model: $(STAMP)  ## retrain models/ from models/training/ (bit-for-bit reproducible)
	$(BIN)/python -m listener.classify.training

DEV_LABELS ?= ../shared/eval-dev/dev_labels.jsonl

eval-real: $(STAMP)  ## the shipped model on the real-item dev set (DEV_LABELS=...), if present
	$(BIN)/listener model evaluate --real-labels $(DEV_LABELS)

digest-preview: $(STAMP)  ## render today's digest to stdout and digest.html; send nothing
	$(BIN)/listener $(CONFIG_OPTION) $(DB_OPTION) digest --preview --out digest.html

status: $(STAMP)  ## is the daemon alive, next jobs, feed health, last digests
	$(BIN)/listener $(CONFIG_OPTION) $(DB_OPTION) status

bench: $(STAMP)  ## benchmarks on generated data (about 14 min, 3 GB of temp disk); prints tables
	$(BIN)/python -m bench

bench-quick: $(STAMP)  ## the same sections on small data, in about a minute
	$(BIN)/python -m bench --soft --feeds 50 --items 10 --digest-items 50000 --daemon-cycles 3 --watch-items 50000 --watch-match-items 5000 --learning-splits 1

clean:  ## remove the venv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
