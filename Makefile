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
NEMESIS_SEED ?=
NEMESIS_MINUTES ?= 10
NEMESIS_N ?= 1000
MYPY_PATHS := shared/src services/draft-api/src services/export-service/src \
	services/audit-service/src deploy/devstack/src

.PHONY: help venv install up down clean status token kafka-credentials restart kill psql redis-cli \
	lint test test-unit test-integration test-e2e bench schemas audit-verify \
	test-slow test-faults-long test-nemesis

help:
	@echo "make up | down | clean | status | token [ROLE=approver] [ORG=demo] | kafka-credentials"
	@echo "make restart SVC=name | kill SVC=name   (postgres redis kafka sftp gateway"
	@echo "                                          draft-api export-service audit-service)"
	@echo "make psql | redis-cli | install | lint | test | test-unit | test-integration"
	@echo "make test-e2e | bench | schemas | audit-verify"
	@echo "make test-slow | test-faults-long | test-nemesis [NEMESIS_SEED=n]   (long runs)"

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
	$(PY) -m pytest tests $(QUICK) $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install
	$(PY) -m pytest tests/integration $(QUICK) $(PYTEST_ARGS)

test-e2e: install
	$(PY) -m pytest tests/e2e $(QUICK) $(PYTEST_ARGS)

# the 3-minute SFTP outage and other tests marked slow
test-slow: install
	$(PY) -m pytest tests -m slow --timeout=1800 $(PYTEST_ARGS)

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

bench: venv
	$(PY) -m tests.bench

schemas: venv
	$(PY) -m orderflow_shared schemas write
	$(PY) -m orderflow_shared asyncapi write

# verifies the audit hash chains of the running dev stack against their signed
# checkpoints (the service's table and the topic audit.checkpoint)
audit-verify:
	@$(DEVSTACK) exec audit-service -- $(PY) -m audit_service audit-verify
