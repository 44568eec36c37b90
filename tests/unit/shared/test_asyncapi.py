"""shared/asyncapi.yaml follows the event contracts, the topic settings and what the
services really subscribe to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from orderflow_shared.__main__ import main
from orderflow_shared.contracts.asyncapi import (
    asyncapi_is_stale,
    channel_id,
    default_asyncapi_path,
    render_asyncapi,
    render_text,
    write_asyncapi,
)
from orderflow_shared.contracts.events import EVENT_SPECS
from orderflow_shared.contracts.services import (
    AUDIT_TOPIC_PATTERN,
    SUBSCRIPTIONS,
    Service,
    producer_of,
    subscriptions_of,
)
from orderflow_shared.contracts.topics import ALL_TOPICS, COMPACTED_TOPICS, DEAD_LETTER_TOPIC
from orderflow_shared.messaging.consumer import DEAD_LETTER_HEADERS
from orderflow_shared.messaging.envelope import REQUIRED_HEADERS
from orderflow_shared.settings import ServiceSettings

DOC: dict[str, Any] = render_asyncapi()


def test_the_committed_document_matches_the_contracts() -> None:
    assert not asyncapi_is_stale(), (
        "event contracts changed without shared/asyncapi.yaml; "
        "run `make schemas` (python -m orderflow_shared asyncapi write) and commit it"
    )
    assert yaml.safe_load(default_asyncapi_path().read_text()) == DOC


def test_check_fails_on_drift_and_passes_after_write(tmp_path: Path) -> None:
    target = tmp_path / "asyncapi.yaml"
    assert main(["asyncapi", "check", "--file", str(target)]) == 1  # missing
    assert main(["asyncapi", "write", "--file", str(target)]) == 0
    assert main(["asyncapi", "check", "--file", str(target)]) == 0
    target.write_text(target.read_text().replace("partitions: 6", "partitions: 7", 1))
    assert asyncapi_is_stale(target)
    assert main(["asyncapi", "check", "--file", str(target)]) == 1
    assert write_asyncapi(target) is True
    assert write_asyncapi(target) is False
    assert main(["asyncapi", "check", "--file", str(target)]) == 0


def test_rendering_is_deterministic_and_has_no_yaml_aliases() -> None:
    text = render_text()
    assert text == render_text()
    assert "&id" not in text and "*id" not in text


def test_one_channel_per_topic_with_the_dead_letter_topic() -> None:
    addresses = {c["address"] for c in DOC["channels"].values()}
    assert addresses == {str(t) for t in ALL_TOPICS}
    assert str(DEAD_LETTER_TOPIC) in addresses
    for topic in ALL_TOPICS:
        channel = DOC["channels"][channel_id(topic)]
        kafka = channel["bindings"]["kafka"]
        assert kafka["topic"] == topic
        assert kafka["partitions"] == ServiceSettings.model_fields["kafka_topic_partitions"].default
        policy = ["compact"] if topic in COMPACTED_TOPICS else ["delete"]
        assert kafka["topicConfiguration"]["cleanup.policy"] == policy


def test_one_message_per_event_type_on_its_topic_with_payload_headers_and_key() -> None:
    messages = DOC["components"]["messages"]
    for spec in EVENT_SPECS:
        message = messages[spec.ce_type]
        assert message["payload"] == {"$ref": f"#/components/schemas/{spec.model.__name__}"}
        assert spec.model.__name__ in DOC["components"]["schemas"]
        headers = message["headers"]
        assert headers["required"] == list(REQUIRED_HEADERS)
        assert headers["properties"]["ce_type"]["const"] == spec.ce_type
        assert {"ce_orgid", "ce_actorid"} <= set(headers["required"])
        assert "key" in message["bindings"]["kafka"]
        channel = DOC["channels"][channel_id(spec.topic)]
        assert channel["messages"][spec.ce_type] == {
            "$ref": f"#/components/messages/{spec.ce_type}"
        }
    dead_letter = messages["dead_letter"]
    assert dead_letter["headers"]["required"] == list(DEAD_LETTER_HEADERS)


def test_the_payload_schemas_are_the_json_schemas_of_the_models() -> None:
    schemas = DOC["components"]["schemas"]
    for spec in EVENT_SPECS:
        own = spec.model.model_json_schema(mode="serialization")
        assert schemas[spec.model.__name__]["required"] == own["required"]
        assert set(schemas[spec.model.__name__]["properties"]) == set(own["properties"])


def test_operations_send_for_the_producer_and_receive_for_each_consumer_group() -> None:
    operations = DOC["operations"]
    for topic in ALL_TOPICS:
        ref = {"$ref": f"#/channels/{channel_id(topic)}"}
        on_topic = [op for op in operations.values() if op["channel"] == ref]
        senders = [op for op in on_topic if op["action"] == "send"]
        receivers = [op for op in on_topic if op["action"] == "receive"]
        if topic == DEAD_LETTER_TOPIC:
            writers = {s.service for s in SUBSCRIPTIONS if not s.covers(DEAD_LETTER_TOPIC)}
            assert len(senders) == len(writers) == 3
        else:
            assert len(senders) == 1 and str(producer_of(topic)) in senders[0]["title"]
        groups = sorted(op["bindings"]["kafka"]["groupId"]["enum"][0] for op in receivers)
        assert groups == sorted(s.group_id for s in subscriptions_of(topic)), topic
    assert "auditServiceReceiveDraftCreated" in operations


def test_the_servers_use_the_services_sasl_mechanism() -> None:
    mechanism = ServiceSettings.model_fields["kafka_sasl_mechanism"].default
    expected = {"SCRAM-SHA-512": "scramSha512", "SCRAM-SHA-256": "scramSha256"}[mechanism]
    schemes = DOC["components"]["securitySchemes"]
    for server in DOC["servers"].values():
        [scheme] = server["security"]
        name = scheme["$ref"].rsplit("/", 1)[-1]
        assert schemes[name]["type"] == expected


def test_the_subscriptions_are_what_the_services_subscribe_to() -> None:
    """The document's consumers come from SUBSCRIPTIONS; hold the services to it."""
    from audit_service.settings import DEFAULT_TOPIC_PATTERN, AuditSettings
    from draft_api.entrypoints.consumer import TOPICS as DRAFT_API_TOPICS
    from draft_api.settings import DraftApiSettings
    from export_service.service_layer.exports import CONSUMER as EXPORT_GROUP

    by_group = {s.group_id: s for s in SUBSCRIPTIONS}
    draft = by_group[DraftApiSettings.model_fields["consumer_group_id"].default]
    assert draft.service is Service.DRAFT_API
    assert set(draft.topics) == {str(t) for t in DRAFT_API_TOPICS}
    assert by_group[EXPORT_GROUP].topics == ("draft.push_requested",)
    assert DEFAULT_TOPIC_PATTERN == AUDIT_TOPIC_PATTERN
    audit = AuditSettings.model_fields["audit_consumer_group"].default
    assert by_group[audit].pattern == AUDIT_TOPIC_PATTERN
    assert by_group[f"{audit}.dead-letter"].topics == (DEAD_LETTER_TOPIC,)
    for sub in SUBSCRIPTIONS:
        assert set(sub.topics) <= {str(t) for t in ALL_TOPICS}, sub
    # the audit pattern covers every topic but the dead-letter one and its own checkpoints
    for topic in ALL_TOPICS:
        own = topic in (DEAD_LETTER_TOPIC, "audit.checkpoint")
        assert by_group[audit].covers(topic) == (not own), topic
