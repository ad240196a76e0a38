# The two commands of README.md: `make demo` and `make test`. Everything they need is installed
# and started by them; `make down` stops what they started.
PY    := .venv/bin/python
STACK := $(PY) -m deploy.local.stack

.PHONY: install up demo test test-saturday chaos down status lint asyncapi bench

install:
	@deploy/local/install.sh

up: install
	@$(STACK) up

demo: up
	@$(PY) -m deploy.local.demo

# Starts the stack, runs the whole suite, stops the stack whatever the result. Debian's
# Prometheus checks the dashboards' and alerts' queries against the running services; Postfix's
# real smtpd, in a private instance, receives the pipelined relay (tests/integration).
test: install
	@deploy/local/install.sh prometheus postfix
	@$(STACK) up
	@status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; $(STACK) down; exit $$status

# The same suite with every process but Kafka on a wall clock moved to the last Saturday
# 23:59:50 in Toronto (libfaketime): no test may depend on the day or the hour it runs. A stack
# of its own, started empty, as on a machine whose clock says Saturday.
SATURDAY_RUN_DIR := /tmp/broadcast-engine-saturday
test-saturday: install
	@deploy/local/install.sh faketime prometheus postfix
	@$(STACK) down
	@rm -rf $(SATURDAY_RUN_DIR)
	@BROADCAST_RUN_DIR=$(SATURDAY_RUN_DIR) $(PY) deploy/local/fake_clock.py -- \
		$(MAKE) --no-print-directory test

# Issue 20's chaos test: three brokers and two instances of each service, one of each and a
# broker killed mid-broadcast. A stack of its own shape: the running one is stopped first.
CLUSTER := BROADCAST_KAFKA_BROKERS=3 BROADCAST_INSTANCES=2 \
	BROADCAST_KAFKA=127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096
chaos: install
	@$(STACK) down
	@$(CLUSTER) $(STACK) up
	@status=0; $(CLUSTER) $(PY) -m pytest -m chaos -s tests/chaos || status=$$?; \
		$(CLUSTER) $(STACK) down; exit $$status

down:
	@if [ -x $(PY) ]; then $(STACK) down; else python3 -m deploy.local.stack down; fi

status:
	@$(STACK) status

lint: install
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/mypy

asyncapi: install
	@$(PY) -m shared.asyncapi write

# The end-to-end bench at N recipients: `make bench N=1000000`. BENCH_ARGS adds to the command
# line (`BENCH_ARGS="--compare bench/results/before.json"`); a --contracts there wins over N.
N := 100000
bench: install
	@deploy/local/install.sh postfix
	@$(STACK) up
	@$(PY) -m bench.e2e --contracts $(N) $(BENCH_ARGS)
