"""The cluster tier (`make test-cluster`): the devstack's test stack with three KRaft
brokers (KAFKA_BROKERS=3, set by the make target). Not part of `make test`."""

from __future__ import annotations

from typing import Any

import pytest
from orderflow_devstack.kafka_cluster import broker_count, node_name


@pytest.fixture(scope="session")
def brokers(stack: Any) -> list[str]:
    """The broker components of the stack (kafka, kafka-2, kafka-3)."""
    count = broker_count(stack._stack.cfg)
    if count < 3:
        pytest.fail("the cluster tier needs KAFKA_BROKERS=3 (run it with `make test-cluster`)")
    return [node_name(n) for n in range(1, count + 1)]
