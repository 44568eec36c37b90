"""The Kafka principals, the ACL table and the client options every service builds."""

from __future__ import annotations

import pytest
from audit_service.settings import AuditSettings
from draft_api.entrypoints.consumer import TOPICS as DRAFT_API_CONSUMES
from draft_api.settings import DraftApiSettings
from export_service.service_layer.exports import CONSUMER as EXPORT_GROUP
from orderflow_shared.contracts.topics import Topic
from orderflow_shared.logging import redact
from orderflow_shared.messaging.acls import (
    ACLS,
    INTEGRATION,
    INTEGRATION_GROUP_PREFIX,
    PRINCIPALS,
    PUBLISHED_TOPICS,
    SERVICE_PRINCIPALS,
    Operation,
    ResourceType,
    allows,
)
from orderflow_shared.messaging.kafka import client_options, sasl_options
from orderflow_shared.settings import ServiceSettings
from pydantic import SecretStr, ValidationError

READ, WRITE = Operation.READ, Operation.WRITE
TOPIC, GROUP = ResourceType.TOPIC, ResourceType.GROUP
PRODUCERS = {
    "draft-api": [t for t in Topic if t.startswith("draft.")],
    "export-service": [t for t in Topic if t.startswith("export.")]
    + [Topic.ERP_CONNECTION_CHANGED],
    "audit-service": [Topic.AUDIT_CHECKPOINT],
}


def test_each_services_default_groups_belong_to_its_principal_alone() -> None:
    audit = AuditSettings()
    groups = {
        "draft-api": [DraftApiSettings().consumer_group_id],
        "export-service": [EXPORT_GROUP],
        "audit-service": [audit.audit_consumer_group, audit.dead_letter_group],
    }
    for service, names in groups.items():
        for group in names:
            for principal in PRINCIPALS[1:]:
                owner = principal == SERVICE_PRINCIPALS[service]
                assert allows(principal, READ, GROUP, group) is owner, (principal, group)


@pytest.mark.parametrize("topic", list(Topic), ids=str)
def test_only_the_owner_of_a_topic_may_produce_it(topic: Topic) -> None:
    owners = {p for p, topics in PRODUCERS.items() if topic in topics}
    if topic is Topic.DEAD_LETTER:
        owners = set(SERVICE_PRINCIPALS.values())
    writers = {p for p in PRINCIPALS[1:] if allows(p, WRITE, TOPIC, str(topic))}
    assert writers == owners


def test_each_service_may_read_what_it_consumes_and_audit_reads_everything() -> None:
    for topic in DRAFT_API_CONSUMES:
        assert allows("draft-api", READ, TOPIC, str(topic))
    assert allows("export-service", READ, TOPIC, str(Topic.DRAFT_PUSH_REQUESTED))
    assert not allows("export-service", READ, TOPIC, str(Topic.EXPORT_SENT))
    for topic in [*Topic, "draft.added_later"]:
        assert allows("audit-service", READ, TOPIC, str(topic))


def test_the_integration_principal_reads_published_topics_in_its_own_groups_only() -> None:
    assert Topic.DEAD_LETTER not in PUBLISHED_TOPICS
    assert set(PUBLISHED_TOPICS) == {str(t) for t in Topic} - {str(Topic.DEAD_LETTER)}
    for topic in PUBLISHED_TOPICS:
        assert allows(INTEGRATION, READ, TOPIC, topic)
    assert not allows(INTEGRATION, READ, TOPIC, str(Topic.DEAD_LETTER))
    assert not any(a.operation is WRITE for a in ACLS if a.principal == INTEGRATION)
    assert allows(INTEGRATION, READ, GROUP, f"{INTEGRATION_GROUP_PREFIX}acme-erp")
    for group in ("draft-api", "export-service", "audit-service", "acme-erp"):
        assert not allows(INTEGRATION, READ, GROUP, group)


def test_the_admin_has_no_acl_it_is_the_super_user() -> None:
    assert PRINCIPALS[0] == "admin"
    assert not [a for a in ACLS if a.principal == "admin"]


def test_plaintext_settings_give_only_the_bootstrap_servers() -> None:
    settings = ServiceSettings(kafka_bootstrap_servers="k:9092")
    assert client_options(settings) == {"bootstrap_servers": "k:9092"}


def test_sasl_settings_give_the_principals_login() -> None:
    settings = ServiceSettings(
        kafka_bootstrap_servers="k:9092",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_username="draft-api",
        kafka_password=SecretStr("pw-123"),
    )
    assert client_options(settings) == sasl_options(
        "k:9092", username="draft-api", password="pw-123"
    )
    assert client_options(settings) == {
        "bootstrap_servers": "k:9092",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "draft-api",
        "sasl_plain_password": "pw-123",
    }
    assert "pw-123" not in repr(settings)


def test_sasl_ssl_adds_a_verifying_tls_context() -> None:
    settings = ServiceSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_username="audit-service",
        kafka_password=SecretStr("pw"),
    )
    context = client_options(settings)["ssl_context"]
    assert context.check_hostname and context.verify_mode.name == "CERT_REQUIRED"


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="KAFKA_USERNAME and KAFKA_PASSWORD"):
        ServiceSettings(kafka_security_protocol="SASL_PLAINTEXT", kafka_username="draft-api")


def test_the_kafka_password_keys_are_redacted_in_logs() -> None:
    event = {"kafka_password": "pw-1", "sasl_plain_password": "pw-2", "user": "draft-api"}
    assert redact(event) == {
        "kafka_password": "[REDACTED]",
        "sasl_plain_password": "[REDACTED]",
        "user": "draft-api",
    }
