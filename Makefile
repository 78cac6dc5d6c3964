# queuebench: `make demo` and `make test` set up everything they need on a fresh machine.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
QB      := $(VENV)/bin/queuebench
INSTALLED := $(VENV)/.installed
# Ray, for consumers over several hosts: the tests need it, `make demo` does not (240 MB).
CLUSTER_INSTALLED := $(VENV)/.cluster-installed
FORMATS := --format json --format protobuf

.PHONY: install demo test unit lint bench bench-ledger ceilings scenarios scenarios-report faults faults-report cluster-test reliability-test throughput-test report reference reference-report \
        services-up services-down services-status clean

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]' -c constraints.txt
	touch $@

$(CLUSTER_INSTALLED): $(INSTALLED)
	$(PY) -m pip install --quiet -e '.[cluster]' -c constraints.txt
	touch $@

install: $(INSTALLED)

## The main job on the embedded pairs (no server needed): both experiments, both formats.
demo: $(INSTALLED)
	$(QB) run reliability throughput --pair embedded $(FORMATS) --name demo

## Every test, against real brokers that services-up installs and starts.
test: $(INSTALLED) $(CLUSTER_INSTALLED) services-up
	$(PY) -m pytest

unit: $(INSTALLED)
	$(PY) -m pytest -m "not slow and not broker"

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

## The harness's own cost: each fast pair through queuebench against a bare loop of its client
## (produce and consume msg/s, overhead in percent; figures only, no verdict).
bench: $(INSTALLED) services-up
	$(PY) -m queuebench.bench.overhead

## What one poll of the ledger costs with 900 consumer files (figures only, no verdict).
bench-ledger: $(INSTALLED)
	$(PY) -m queuebench.bench.ledger

## Each broker's own load tool (Kafka's perf tools, RabbitMQ's PerfTest, redis-benchmark, bare
## psycopg and boto3 loops) at the pairs' message sizes: reports/CEILINGS.md and
## reports/CEILINGS/ceilings.json. About 6 minutes on 2 cores.
ceilings: $(INSTALLED) services-up
	$(PY) -m queuebench.ceilings

## The experiments over every pair whose broker answers, one report each.
reliability-test: $(INSTALLED) services-up
	$(QB) run reliability --pair all --reachable-only $(FORMATS) --name reliability

throughput-test: $(INSTALLED) services-up
	$(QB) run throughput --pair all --reachable-only $(FORMATS) --name throughput

## The seeds' scenarios (seeds 000-002) with each pair's default settings, one broker group at a
## time with only its broker running (on 2 cores an idle Kafka or RabbitMQ takes CPU from the pair
## measured), each group a run of its own, merged into reports/SCENARIOS.md: about 8.5 hours on 2
## cores. Kombu's other variant, seed 000's advice of a connection per 50 consumers, runs the
## scalability scenario. `make scenarios-redis` redoes one group (then `make scenarios-report`);
## `make scenarios-redis SCENARIOS=burst` runs one scenario. Every broker is up again after each
## group, however it ended. `make scenarios RESUME=1` goes on where a stopped run stopped: each
## group resumes its newest run (a complete one runs nothing).
SCENARIOS := scalability burst sustained payload-sizes mixed error-rate producer-modes
SCENARIO_RUNS := embedded postgres redis redis-kombu-per-50 rabbitmq rabbitmq-kombu-per-50 sqs kafka
# The service a run needs: none for the embedded pairs, ElasticMQ for SQS, else the group's name.
scenario_broker = $(patsubst embedded,,$(patsubst sqs,elasticmq,$(firstword $(subst -, ,$1))))
scenario_args = $(if $(findstring -kombu-per-50,$1),\
    scalability --pair kombu+$(firstword $(subst -, ,$1)) --variant connection-per-50,\
    $(SCENARIOS) --pair $1 --variant default)

scenarios: $(INSTALLED)
	-$(MAKE) -k $(addprefix scenarios-,$(SCENARIO_RUNS))
	$(MAKE) scenarios-report

scenarios-%: $(INSTALLED)
	trap '$(PY) -m queuebench.services up > /dev/null' EXIT; trap 'exit 130' INT TERM; \
	$(PY) -m queuebench.services down && \
	$(if $(call scenario_broker,$*),$(PY) -m queuebench.services start $(call scenario_broker,$*) &&) \
	$(QB) run $(call scenario_args,$*) --name scenarios-$* \
	    $(if $(RESUME),$$(ls -d reports/*Z-scenarios-$* 2>/dev/null | tail -1 | sed 's/^/--resume /'))

## Consumers spread over a local Ray cluster of 3 simulated nodes, against the real Redis: the
## reliability workload with node 2's consumers killed halfway loses and repeats what it does on
## one machine (about 35 s).
cluster-test: $(CLUSTER_INSTALLED) services-up
	$(PY) -m pytest tests/test_cluster.py

## The newest run of each scenarios group, merged.
scenarios-report: $(INSTALLED)
	$(QB) report --name SCENARIOS --output reports/SCENARIOS $$(for name in $(SCENARIO_RUNS); do \
	    ls -d reports/*Z-scenarios-$$name 2>/dev/null | tail -1; done)
	sed 's|](\([a-z-]*\.png\))|](SCENARIOS/\1)|' reports/SCENARIOS/report.md > reports/SCENARIOS.md

## Faults beyond the consumer (broker stopped or killed in each durability mode, network cut,
## black hole and latency, a frozen worker) over every broker group, default variants, merged
## into reports/FAULTS.md. The groups share no broker and count messages, so three run at once:
## about 45 minutes on 2 cores.
FAULTS := broker-restart network consumer-pause
FAULT_GROUPS := redis kafka sqs rabbitmq postgres
# RabbitMQ's libraries return from a publish before RabbitMQ has it: their confirms variant too.
FAULT_VARIANTS_rabbitmq := --variant confirms
faults: $(INSTALLED) services-up
	-$(MAKE) -k -j3 $(addprefix faults-,$(FAULT_GROUPS))
	$(MAKE) faults-report

faults-%: $(INSTALLED)
	$(QB) run $(FAULTS) --pair $* --variant default $(FAULT_VARIANTS_$*) --name faults-$*

## The newest fault run of each broker group, merged.
faults-report: $(INSTALLED)
	$(QB) report --name FAULTS --output reports/FAULTS $$(for group in $(FAULT_GROUPS); do \
	    ls -d reports/*-faults-$$group 2>/dev/null | tail -1; done)
	sed 's|](\([a-z-]*\.png\))|](FAULTS/\1)|' reports/FAULTS/report.md > reports/FAULTS.md

## Merge the newest complete run of each name (demo, reliability, throughput, ...) into
## reports/comparison/report.md.
report: $(INSTALLED)
	$(QB) report

## Seed 003 reproduced on this machine: reliability with 100 messages and throughput with 10,000,
## of 100 records each, every pair and variant, both formats, one run each (as in
## experiments/reference.yaml), merged into reports/REFERENCE.md.
## The reliability runs of different brokers share nothing and count messages, not seconds, so
## three run at once; the throughput runs time the machine and run one after another. One run
## per broker, so a broker can be redone alone (`make reference-throughput-redis`, then
## `make reference-report`). Measured on 2 cores: 13 min of reliability, 55 min of throughput
## (RQ's forking worker alone manages ~35 jobs a second). An experiment that fails is an error
## row of its run and of REFERENCE.md: the rest go on.
REFERENCE_GROUPS := kafka sqs redis rabbitmq postgres embedded
REFERENCE_RUNS := $(foreach experiment,reliability throughput,\
                    $(addprefix reference-$(experiment)-,$(REFERENCE_GROUPS)))

reference: $(INSTALLED) services-up
	-$(MAKE) -k -j3 $(addprefix reference-reliability-,$(REFERENCE_GROUPS))
	-$(MAKE) -k $(addprefix reference-throughput-,$(REFERENCE_GROUPS))
	$(MAKE) reference-report

reference-reliability-%: $(INSTALLED)
	$(QB) run reliability --pair $* $(FORMATS) --messages 100 --name reference-reliability-$*

reference-throughput-%: $(INSTALLED)
	$(QB) run throughput --pair $* $(FORMATS) --messages 10000 --repeats 1 --name reference-throughput-$*

## The newest run of each reference part, merged.
reference-report: $(INSTALLED)
	$(QB) report --name REFERENCE --output reports/REFERENCE $$(for name in $(REFERENCE_RUNS); do \
	    ls -d reports/*-$$name 2>/dev/null | tail -1; done)
	sed 's|](\([a-z-]*\.png\))|](REFERENCE/\1)|' reports/REFERENCE/report.md > reports/REFERENCE.md

services-up: $(INSTALLED)
	$(PY) -m queuebench.services up

services-down: $(INSTALLED)
	$(PY) -m queuebench.services down

services-status: $(INSTALLED)
	$(PY) -m queuebench.services status

clean:
	rm -rf $(VENV) .tox .pytest_cache .ruff_cache
