# queuebench: `make demo` and `make test` set up everything they need on a fresh machine.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
QB      := $(VENV)/bin/queuebench
INSTALLED := $(VENV)/.installed
FORMATS := --format json --format protobuf

.PHONY: install demo test unit lint reliability-test throughput-test report reference \
        services-up services-down services-status clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $@

install: $(INSTALLED)

## The main job on the embedded pairs (no server needed): both experiments, both formats.
demo: $(INSTALLED)
	$(QB) run reliability throughput --pair embedded $(FORMATS) --name demo

## Every test, against real brokers that services-up installs and starts.
test: $(INSTALLED) services-up
	$(PY) -m pytest

unit: $(INSTALLED)
	$(PY) -m pytest -m "not slow and not broker"

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

## The experiments over every pair whose broker answers, one report each.
reliability-test: $(INSTALLED) services-up
	$(QB) run reliability --pair all --reachable-only $(FORMATS) --name reliability

throughput-test: $(INSTALLED) services-up
	$(QB) run throughput --pair all --reachable-only $(FORMATS) --name throughput

## Merge the newest complete run of each name (demo, reliability, throughput, ...) into
## reports/comparison/report.md.
report: $(INSTALLED)
	$(QB) report

## Seed 003 reproduced on this machine: reliability with 100 messages and throughput with 10,000,
## of 100 records each, every pair and variant, both formats, merged into reports/REFERENCE.md.
## Long: about two hours on 2 cores (RQ's forking worker alone manages ~25 jobs a second).
reference: $(INSTALLED) services-up
	$(QB) run reliability --pair all $(FORMATS) --messages 100 --name reference-reliability
	$(QB) run throughput --pair all $(FORMATS) --messages 10000 --name reference-throughput
	$(QB) report --name REFERENCE --output reports/REFERENCE \
	    $$(ls -d reports/*-reference-reliability | tail -1) \
	    $$(ls -d reports/*-reference-throughput | tail -1)
	cp reports/REFERENCE/report.md reports/REFERENCE.md

services-up: $(INSTALLED)
	$(PY) -m queuebench.services up

services-down: $(INSTALLED)
	$(PY) -m queuebench.services down

services-status: $(INSTALLED)
	$(PY) -m queuebench.services status

clean:
	rm -rf $(VENV) .tox .pytest_cache .ruff_cache
