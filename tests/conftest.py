"""Session fixtures shared by every test tier.

`infra` (Postgres, Redis, Kafka, sshd; database, roles, schemas, topics) and `stack`
(infra + migrations + services + gateway + seed) come from the devstack's pytest
plugin: see deploy/devstack/src/orderflow_devstack/pytest_plugin.py for `StackHandle`.
"""

pytest_plugins = ["orderflow_devstack.pytest_plugin"]
