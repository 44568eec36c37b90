"""The AsyncAPI 3.0 document of the Kafka surface (`shared/asyncapi.yaml`), built from code.

Everything in it comes from the contracts: topics (`contracts.topics`), event types and
their pydantic models (`contracts.events`), producers, consumer groups, the `source` and
actor conventions (`contracts.services`), the CloudEvents headers
(`messaging.envelope`), topic settings (`messaging.kafka.topic_configs` and the
`ServiceSettings` defaults) and the dead-letter headers (`messaging.consumer`).

`render_asyncapi()` builds the document, `render_text()` its YAML, `write_asyncapi()`
stores it and `asyncapi_is_stale()` tells whether the stored file differs (drift);
`python -m orderflow_shared asyncapi write|check` does the same from the shell.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic.json_schema import models_json_schema

from orderflow_shared.contracts.checkpoints import SIGNED_FIELDS, AuditCheckpointV1
from orderflow_shared.contracts.events import EVENT_SPECS, EventSpec
from orderflow_shared.contracts.services import (
    SOURCE_PREFIX,
    SUBSCRIPTIONS,
    SYSTEM_ACTOR_PREFIX,
    Subscription,
    expected_source,
    producer_of,
    source_for,
)
from orderflow_shared.contracts.topics import ALL_TOPICS, COMPACTED_TOPICS, DEAD_LETTER_TOPIC
from orderflow_shared.contracts.topics import Topic as _Topic
from orderflow_shared.messaging.consumer import DEAD_LETTER_HEADERS
from orderflow_shared.messaging.envelope import (
    ACTOR_HEADER,
    CONTENT_TYPE,
    ORG_HEADER,
    REQUIRED_HEADERS,
    SPEC_VERSION,
)
from orderflow_shared.messaging.kafka import topic_configs
from orderflow_shared.settings import ServiceSettings

ASYNCAPI_VERSION = "3.0.0"
#: Version of the Kafka bindings used (channel, operation, message and server bindings).
KAFKA_BINDING_VERSION = "0.5.0"
#: Version of the event contract as a whole; event types carry their own `.vN`.
DOCUMENT_VERSION = "1.0.0"
#: SASL mechanism the brokers require (the services' `KAFKA_SASL_MECHANISM` default).
SASL_MECHANISM: str = ServiceSettings.model_fields["kafka_sasl_mechanism"].default
_SCHEMES = {"SCRAM-SHA-512": "scramSha512", "SCRAM-SHA-256": "scramSha256"}
_SCHEMA_REF = "#/components/schemas/{model}"
_UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_TRACEPARENT_PATTERN = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"

AUDIT_CHECKPOINT_TOPIC = str(_Topic.AUDIT_CHECKPOINT)

GUARANTEES = f"""\
Every OrderFlow event is a [CloudEvents 1.0](https://cloudevents.io) event in
**binary content mode** of the Kafka protocol binding: the attributes travel in record
headers with the `ce_` prefix, the event data (JSON, `content-type: {CONTENT_TYPE}`)
is the record value. Any CloudEvents SDK reads them, including the extensions.

**Headers.** `ce_id` (UUID, unique per event), `ce_type` (e.g.
`orderflow.draft.approved.v1`; a breaking change is a new type `...v2`), `ce_source`
(`{SOURCE_PREFIX}<service>`, the producing service), `ce_specversion` (`{SPEC_VERSION}`),
`ce_time`, `ce_subject` (the entity the event is about), and two extensions:
`{ORG_HEADER}` (the organisation; every event belongs to exactly one) and
`{ACTOR_HEADER}` (never empty: the user id of the person who caused the event, or
`{SYSTEM_ACTOR_PREFIX}<service>` for a step a service took on its own, such as a
delivery result). `traceparent` (W3C Trace Context) may follow. Records written
before the extensions had their `ce_` prefix carry `orgid` / `actorid` instead;
OrderFlow's consumers read both forms.

**Delivery: at least once.** Producers write each event in the same database
transaction as the change it describes (transactional outbox) and publish it with an
idempotent producer (`acks=all`). A record may still arrive more than once (a relay
that crashed after publishing, a consumer group rebalance): consumers must be
idempotent, keyed by `ce_id` (OrderFlow's services record the ids they applied).
Consumers should read with `isolation.level=read_committed` and commit offsets only
after their own effects are durable.

**Ordering: per key.** The record key is the event's subject (the draft id for
`draft.*` and `export.*` events about a draft, the connection id for events about an
ERP connection), so all events of one entity on one topic sit in one partition, in
the order they were committed. There is no order across topics or across keys.

**Compacted topics.** {", ".join(f"`{t}`" for t in sorted(COMPACTED_TOPICS))}
(`cleanup.policy=compact`). `erp_connection.changed`, keyed by connection id, keeps at
least the latest record of every connection: a consumer that reads it from the
beginning learns the current state of every connection. `{AUDIT_CHECKPOINT_TOPIC}`,
keyed by org id, keeps the latest signed checkpoint of every org's audit chain (plain
JSON records, no CloudEvents headers).

**Dead letters.** A record a consumer cannot read (not a CloudEvent, an unknown
`ce_type`, data that does not match its schema, or refused by the consumer's checks)
is copied to `{DEAD_LETTER_TOPIC}` with its original key, value and headers plus
{", ".join(f"`{h}`" for h in DEAD_LETTER_HEADERS)}; the consumer then carries on. The
audit service records each such record as an `UNREADABLE_EVENT` audit entry.

**Schemas.** The payload schemas below are the JSON Schemas of `shared/schemas/`
(generated from the same models). Consumers must ignore fields they do not know.
"""


def default_asyncapi_path() -> Path:
    """`shared/asyncapi.yaml` of the source tree this package was imported from."""
    return Path(__file__).resolve().parents[3] / "asyncapi.yaml"


def channel_id(topic: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(topic))


def _camel(*parts: str) -> str:
    words = [w for p in parts for w in re.split(r"[^A-Za-z0-9]+", str(p)) if w]
    return words[0].lower() + "".join(w[:1].upper() + w[1:] for w in words[1:])


def _key_description(spec: EventSpec) -> str:
    if spec.entity_type == "draft_order":
        return "The draft id (UUID), the same as `ce_subject`."
    return f"The {spec.entity_type.replace('_', ' ')} id (UUID), the same as `ce_subject`."


def _event_headers(spec: EventSpec) -> dict[str, Any]:
    """The CloudEvents binary-mode headers of one event type, as a JSON Schema."""
    source = expected_source(spec.topic)
    properties: dict[str, Any] = {
        "ce_id": {"type": "string", "format": "uuid", "description": "Unique event id."},
        "ce_type": {"type": "string", "const": spec.ce_type},
        "ce_source": (
            {"type": "string", "const": source, "description": "The producing service."}
            if source
            else {"type": "string"}
        ),
        "ce_specversion": {"type": "string", "const": SPEC_VERSION},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {
            "type": "string",
            "minLength": 1,
            "description": _key_description(spec).replace(", the same as `ce_subject`", ""),
        },
        ORG_HEADER: {
            "type": "string",
            "minLength": 1,
            "description": "Extension `orgid`: the organisation the event belongs to.",
        },
        ACTOR_HEADER: {
            "type": "string",
            "minLength": 1,
            "description": (
                "Extension `actorid`: the user id (JWT `sub`) of the person who caused "
                f"the event, or `{SYSTEM_ACTOR_PREFIX}<service>` for a step a service "
                "took on its own."
            ),
        },
        "content-type": {"type": "string", "const": CONTENT_TYPE},
        "traceparent": {
            "type": "string",
            "pattern": _TRACEPARENT_PATTERN,
            "description": "W3C Trace Context, when the producer had one.",
        },
    }
    return {
        "type": "object",
        "required": list(REQUIRED_HEADERS),
        "properties": properties,
    }


def _event_message(spec: EventSpec) -> dict[str, Any]:
    doc = (spec.model.__doc__ or spec.ce_type).strip()
    return {
        "name": spec.ce_type,
        "title": spec.model.__name__,
        "summary": " ".join(doc.split()),
        "contentType": CONTENT_TYPE,
        "correlationId": {
            "description": "The entity the event is about (also the record key).",
            "location": "$message.header#/ce_subject",
        },
        "headers": _event_headers(spec),
        "payload": {"$ref": _SCHEMA_REF.format(model=spec.model.__name__)},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "pattern": _UUID_PATTERN,
                    "description": _key_description(spec),
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "x-audit-action": spec.audit_action,
    }


def _dead_letter_message() -> dict[str, Any]:
    properties: dict[str, Any] = {
        "dlt_reason": {"type": "string", "description": "Why the consumer could not read it."},
        "dlt_topic": {"type": "string", "description": "Topic of the original record."},
        "dlt_partition": {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "Partition of the original record.",
        },
        "dlt_offset": {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "Offset of the original record.",
        },
        "dlt_consumer": {
            "type": "string",
            "description": "The consumer group that could not read it.",
        },
    }
    return {
        "name": "dead_letter",
        "title": "Unreadable record",
        "summary": "A copy of a record a consumer could not read, with the reason.",
        "description": (
            "Key and value are the original record's, byte for byte (the value may be "
            "anything, even not JSON); the original headers come first, then the `dlt_*` "
            "headers."
        ),
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": list(DEAD_LETTER_HEADERS),
            "properties": properties,
        },
        "payload": {"description": "The original record's value, as it was."},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The original record's key."},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _channel_binding(topic: str) -> dict[str, Any]:
    defaults = ServiceSettings.model_fields
    configs = topic_configs(topic)
    return {
        "kafka": {
            "topic": str(topic),
            "partitions": defaults["kafka_topic_partitions"].default,
            "replicas": defaults["kafka_replication_factor"].default,
            "topicConfiguration": {
                "cleanup.policy": configs.get("cleanup.policy", "delete").split(","),
            },
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }


def _checkpoint_message() -> dict[str, Any]:
    signed = ", ".join(f"`{f}`" for f in SIGNED_FIELDS)
    return {
        "name": "audit_checkpoint",
        "title": AuditCheckpointV1.__name__,
        "summary": "A signed head of one org's audit hash chain.",
        "description": (
            "Plain JSON, no CloudEvents headers. `signature` is Ed25519 over the bytes "
            "`orderflow.audit.checkpoint.v1\\n` followed by the JSON object of "
            f"{signed} (sorted keys, no whitespace, UTF-8, `signed_at` in UTC with "
            "microseconds). `make audit-verify` reads the topic and checks the org's log "
            "against it."
        ),
        "contentType": CONTENT_TYPE,
        "payload": {"$ref": _SCHEMA_REF.format(model=AuditCheckpointV1.__name__)},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The org id."},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _channel(topic: str, specs: list[EventSpec]) -> dict[str, Any]:
    if topic == AUDIT_CHECKPOINT_TOPIC:
        description = (
            "Produced by audit-service: the signed head of each org's audit chain, "
            "refreshed every `AUDIT_CHECKPOINT_INTERVAL_SECONDS` while it changes."
        )
        messages: dict[str, Any] = {
            "audit_checkpoint": {"$ref": "#/components/messages/audit_checkpoint"}
        }
    elif topic == DEAD_LETTER_TOPIC:
        description = (
            "Records a consumer could not read, with the reason and where they came from. "
            "Every consumer group writes here."
        )
        messages = {"dead_letter": {"$ref": "#/components/messages/dead_letter"}}
    else:
        producer = producer_of(topic)
        types = ", ".join(f"`{s.ce_type}`" for s in specs)
        origin = f"{producer} (`{source_for(producer)}`)" if producer else "another system"
        description = f"Produced by {origin}; event types {types}."
        messages = {s.ce_type: {"$ref": f"#/components/messages/{s.ce_type}"} for s in specs}
    if topic in COMPACTED_TOPICS:
        description += " Compacted: the latest record per key is kept."
    return {
        "address": str(topic),
        "title": str(topic),
        "description": description,
        "messages": messages,
        "bindings": _channel_binding(topic),
    }


def _consumers(topic: str) -> list[Subscription]:
    return [s for s in SUBSCRIPTIONS if s.covers(topic)]


def _operation(
    action: str, topic: str, title: str, summary: str, messages: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel_id(topic)}"},
        "title": title,
        "summary": summary,
        "messages": messages,
    }


def _receive(sub: Subscription, topic: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    """`sub` consuming `topic`, with its consumer group."""
    operation = _operation(
        "receive", topic, f"{sub.service} consumes {topic}", sub.description, messages
    )
    operation["bindings"] = {
        "kafka": {
            "groupId": {"type": "string", "enum": [sub.group_id]},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }
    return operation


def _operations(by_topic: dict[str, list[EventSpec]]) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for topic, specs in by_topic.items():
        cid = channel_id(topic)
        messages = [{"$ref": f"#/channels/{cid}/messages/{s.ce_type}"} for s in specs]
        producer = producer_of(topic)
        if topic == AUDIT_CHECKPOINT_TOPIC:
            operations[_camel("audit-service", "send", topic)] = _operation(
                "send",
                topic,
                f"audit-service publishes {topic}",
                "Signed by audit-service's checkpoint loop (idempotent producer).",
                [{"$ref": f"#/channels/{cid}/messages/audit_checkpoint"}],
            )
        elif producer is not None:
            operations[_camel(producer, "send", topic)] = _operation(
                "send",
                topic,
                f"{producer} publishes {topic}",
                "Published from the transactional outbox (idempotent producer).",
                messages,
            )
        for sub in _consumers(topic):
            operations[_camel(sub.service, "receive", topic)] = _receive(sub, topic, messages)
    dead_letters = [{"$ref": f"#/channels/{channel_id(DEAD_LETTER_TOPIC)}/messages/dead_letter"}]
    writers = sorted({s.service for s in SUBSCRIPTIONS if not s.covers(DEAD_LETTER_TOPIC)})
    for service in writers:
        operations[_camel(service, "send", DEAD_LETTER_TOPIC)] = _operation(
            "send",
            DEAD_LETTER_TOPIC,
            f"{service} dead-letters what it cannot read",
            "The original record plus the dlt_* headers.",
            dead_letters,
        )
    for sub in _consumers(DEAD_LETTER_TOPIC):
        operations[_camel(sub.service, "receive", DEAD_LETTER_TOPIC)] = _receive(
            sub, DEAD_LETTER_TOPIC, dead_letters
        )
    return operations


def _servers() -> dict[str, Any]:
    scheme = {"$ref": f"#/components/securitySchemes/{_SCHEMES[SASL_MECHANISM]}"}
    return {
        "local": {
            "host": "127.0.0.1:9092",
            "protocol": "kafka",
            "title": "Local stack",
            "description": (
                "The broker of `make up` (port 9092 plus `ORDERFLOW_PORT_OFFSET`), "
                f"SASL_PLAINTEXT on loopback with {SASL_MECHANISM}. Each service has its own "
                "principal and ACLs; integrators log in as the read-only `integration` "
                "principal (`make kafka-credentials`), which reads every channel but "
                "`dead_letter` in consumer groups named `integration-...`."
            ),
            "security": [scheme],
        },
        "production": {
            "host": "{bootstrap}",
            "protocol": "kafka-secure",
            "title": "A deployment",
            "description": f"SASL_SSL with {SASL_MECHANISM} (`KAFKA_BOOTSTRAP_SERVERS`).",
            "variables": {
                "bootstrap": {
                    "description": "host:port of a broker of the deployment's cluster.",
                    "default": "kafka:9093",
                }
            },
            "security": [scheme],
        },
    }


def render_asyncapi() -> dict[str, Any]:
    """The AsyncAPI document as a dict (deterministic)."""
    by_topic: dict[str, list[EventSpec]] = {}
    for topic in ALL_TOPICS:
        if topic != DEAD_LETTER_TOPIC:
            by_topic[str(topic)] = [s for s in EVENT_SPECS if s.topic == topic]
    _keys, top = models_json_schema(
        [(s.model, "serialization") for s in EVENT_SPECS] + [(AuditCheckpointV1, "serialization")],
        ref_template=_SCHEMA_REF,
    )
    channels = {channel_id(t): _channel(t, specs) for t, specs in by_topic.items()}
    channels[channel_id(DEAD_LETTER_TOPIC)] = _channel(DEAD_LETTER_TOPIC, [])
    messages = {s.ce_type: _event_message(s) for s in EVENT_SPECS}
    messages["dead_letter"] = _dead_letter_message()
    messages["audit_checkpoint"] = _checkpoint_message()
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "OrderFlow events",
            "version": DOCUMENT_VERSION,
            "description": GUARANTEES,
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": _servers(),
        "channels": channels,
        "operations": _operations(by_topic),
        "components": {
            "schemas": dict(sorted(top.get("$defs", {}).items())),
            "messages": messages,
            "securitySchemes": {
                _SCHEMES[SASL_MECHANISM]: {
                    "type": _SCHEMES[SASL_MECHANISM],
                    "description": (
                        "SASL/SCRAM user and password of a Kafka principal; the broker's "
                        "ACLs say which topics and groups it may use."
                    ),
                }
            },
        },
    }


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no types
    """Multi-line strings as literal blocks, so the description reads as written; no
    anchors or aliases (each part of the document reads on its own)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render_text() -> str:
    header = (
        "# Generated from orderflow_shared.contracts; do not edit by hand.\n"
        "# Regenerate: make schemas (python -m orderflow_shared asyncapi write)\n"
    )
    body: str = yaml.dump(
        render_asyncapi(),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
    return header + body


def write_asyncapi(path: Path | None = None) -> bool:
    """Store the document; True when the file changed."""
    path = path or default_asyncapi_path()
    text = render_text()
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def asyncapi_is_stale(path: Path | None = None) -> bool:
    path = path or default_asyncapi_path()
    return not path.exists() or path.read_text() != render_text()
