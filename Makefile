# OrderFlow: `make up` runs the whole stack locally (no Docker), `make test` tests it.
# The local stack lives in .run/ (override with ORDERFLOW_STATE_DIR); ports are the
# dev defaults plus ORDERFLOW_PORT_OFFSET (0 here, 10000 in tests).

SHELL := /bin/bash
.DEFAULT_GOAL := help

PY := .venv/bin/python
DEVSTACK := $(PY) -m orderflow_devstack
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
ALL_ROLES := viewer,operator,approver,admin
ROLE ?= $(ALL_ROLES)
ORG ?= demo
SVC ?= $(NAME)
PYTEST_ARGS ?=
# minutes-long runs have targets of their own; the tiers deselect them
QUICK := -m "not slow and not nemesis"
# the container and cluster tiers bring up stacks of their own (make test-containers/-cluster)
OWN_STACK_TIERS := --ignore=tests/containers --ignore=tests/cluster
NEMESIS_SEED ?=
NEMESIS_MINUTES ?= 10
NEMESIS_N ?= 1000
MYPY_PATHS := shared/src services/draft-api/src services/export-service/src \
	services/audit-service/src deploy/devstack/src

.PHONY: help venv install up down clean status token kafka-credentials restart kill psql redis-cli \
	lint test test-unit test-integration test-e2e bench schemas audit-verify \
	test-slow test-faults-long test-nemesis
.PHONY: images compose-up compose-down compose-ps test-containers test-cluster

help:
	@echo "make up | down | clean | status | token [ROLE=approver] [ORG=demo] | kafka-credentials"
	@echo "make restart SVC=name | kill SVC=name   (postgres redis kafka sftp gateway"
	@echo "                                          draft-api export-service audit-service)"
	@echo "make psql | redis-cli | install | lint | test | test-unit | test-integration"
	@echo "make test-e2e | bench | schemas | audit-verify | screenshots"
	@echo "make test-slow | test-faults-long | test-nemesis [NEMESIS_SEED=n]   (long runs)"
	@echo "make images | compose-up [EXPORT_WORKERS=n] | compose-down [CLEAN=1] | compose-ps"
	@echo "make test-containers   (quickstart + worker SIGKILL against the compose stack)"
	@echo "make up KAFKA_BROKERS=3 | test-cluster   (three KRaft brokers; one killed under load)"

# the Python environment (uv is installed with pip when absent)
venv:
	@command -v uv >/dev/null 2>&1 || python3 -c 'import uv' 2>/dev/null \
		|| python3 -m pip install --quiet uv \
		|| python3 -m pip install --quiet --break-system-packages uv
	@$(UV) sync --all-packages --quiet

# Debian packages, the sftp user, the Python environment, Kafka jars (all only if missing)
install: venv
	@$(DEVSTACK) install

up: install
	@$(DEVSTACK) up --no-install

down:
	@$(DEVSTACK) down

clean:
	@$(DEVSTACK) clean

status:
	@$(DEVSTACK) status

# the JWT is the last line of the output
token:
	@$(DEVSTACK) token --roles '$(ROLE)' --org '$(ORG)'

# the read-only Kafka principal for integrators
kafka-credentials:
	@$(DEVSTACK) kafka-credentials

restart:
	@test -n "$(SVC)" || { echo "usage: make restart SVC=<component>"; exit 2; }
	@$(DEVSTACK) restart $(SVC)

kill:
	@test -n "$(SVC)" || { echo "usage: make kill SVC=<component>"; exit 2; }
	@$(DEVSTACK) kill $(SVC)

# reads SQL from stdin too: echo 'select 1' | make psql
psql:
	@$(DEVSTACK) psql

redis-cli:
	@$(DEVSTACK) redis-cli

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy $(MYPY_PATHS)
	.venv/bin/lint-imports

# one pytest run over every tier, so "no tests collected" (exit 5) is never hidden
test: install lint
	$(PY) -m pytest tests $(QUICK) $(OWN_STACK_TIERS) $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(PY) -m pytest tests/integration $(QUICK) $(PYTEST_ARGS)

test-e2e: install
	$(PY) -m pytest tests/e2e $(QUICK) $(PYTEST_ARGS)

# the 3-minute SFTP outage and other tests marked slow
test-slow: install
	$(PY) -m pytest tests -m slow $(OWN_STACK_TIERS) --timeout=1800 $(PYTEST_ARGS)

# the fault matrix with N=1000 per scenario (`make test` runs it with N=100)
test-faults-long: install
	ORDERFLOW_E2E_N=1000 $(PY) -m pytest tests/e2e/test_faults.py --timeout=3600 $(PYTEST_ARGS)

# seeded random faults over every component while pushes arrive (>= 10 min, N >= 1000);
# the delivery deadline outlasts the run, so every draft must end PUSHED
test-nemesis: install
	NEMESIS_SEED=$(NEMESIS_SEED) NEMESIS_MINUTES=$(NEMESIS_MINUTES) NEMESIS_N=$(NEMESIS_N) \
	EXPORT_DELIVERY_DEADLINE_SECONDS=$${EXPORT_DELIVERY_DEADLINE_SECONDS:-3600} \
	ORDERFLOW_NO_RELIABILITY_REPORT=1 ORDERFLOW_PG_DURABLE_COMMIT=1 \
	$(PY) -m pytest tests/e2e/test_nemesis.py -m nemesis -s --timeout=7200 $(PYTEST_ARGS)

# every figure BENCH_REPEAT times (median and range in docs/benchmarks.md, each run in
# docs/benchmarks.json), against the running `make up` stack; ~15 min on 2 cores
BENCH_REPEAT ?= 3
bench: venv
	$(PY) -m tests.bench --repeat $(BENCH_REPEAT) $(BENCH_ARGS)

# every console page as PNG at 1280x800 and 390 px (and dark) into docs/screenshots/
# (starts its own test stack, like the tests)
.PHONY: screenshots
screenshots: install
	ORDERFLOW_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest \
		tests/e2e/console/test_console_pages.py -q $(PYTEST_ARGS)

schemas: venv
	$(PY) -m orderflow_shared schemas write
	$(PY) -m orderflow_shared asyncapi write

# verifies the audit hash chains of the running dev stack against their signed
# checkpoints (the service's table and the topic audit.checkpoint)
audit-verify:
	@$(DEVSTACK) exec audit-service -- $(PY) -m audit_service audit-verify

# --- containers (README "Containers"): docker where an engine answers, else podman ----
# every image from deploy/docker/*.Dockerfile (local debootstrap base and host-built
# wheels when there is no registry); prints each image's size
images:
	@bash deploy/docker/build-images.sh

# docker-compose.yml: generated secrets (.env), every role its own container, gateway
# on :8000, then the demo seed; EXPORT_WORKERS=n export-worker containers
compose-up:
	@bash deploy/docker/compose.sh up

# CLEAN=1 also removes the volumes and the stack's secrets
compose-down:
	@bash deploy/docker/compose.sh down

compose-ps:
	@bash deploy/docker/compose.sh ps

# the quickstart and an export-worker SIGKILL against a fresh compose stack (brought
# up and down by the run; minutes, not part of `make test`)
test-containers: venv
	$(PY) -m pytest tests/containers --timeout=1800 $(PYTEST_ARGS)

# a broker of three SIGKILLed while pushes arrive (the test stack with KAFKA_BROKERS=3;
# minutes, not part of `make test`)
test-cluster: install
	KAFKA_BROKERS=3 $(PY) -m pytest tests/cluster --timeout=1800 $(PYTEST_ARGS)
