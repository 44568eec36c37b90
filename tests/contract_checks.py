"""Checks of Kafka records against the published contracts, as an integrator would run
them: the official `cloudevents` SDK (both of its Kafka binding APIs), the JSON Schemas
of shared/schemas, and the messages of shared/asyncapi.yaml."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.v1 import kafka as ce_kafka_v1
from orderflow_shared.contracts.asyncapi import default_asyncapi_path
from orderflow_shared.contracts.schemas import default_schema_dir


@dataclass(frozen=True)
class SdkView:
    """What each SDK API makes of one record."""

    type: str
    source: str
    id: str
    subject: str | None
    orgid: str | None
    actorid: str | None
    partitionkey: Any
    data: Any
    legacy_orgid: str | None
    legacy_actorid: str | None
    legacy_data: Any


def header_dict(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, bytes]:
    return {name: value or b"" for name, value in headers}


def parse_with_sdk(
    key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes | None]]
) -> SdkView:
    """Parse with `cloudevents.core.bindings.kafka.from_binary_event` and with the older
    `cloudevents.v1.kafka.from_binary` (both raise on a record that is not a CloudEvent)."""
    hdrs = header_dict(headers)
    event = ce_kafka.from_binary_event(ce_kafka.KafkaMessage(headers=hdrs, key=key, value=value))
    legacy = ce_kafka_v1.from_binary(ce_kafka_v1.KafkaMessage(headers=hdrs, key=key, value=value))
    return SdkView(
        type=event.get_type(),
        source=event.get_source(),
        id=event.get_id(),
        subject=event.get_subject(),
        orgid=event.get_extension("orgid"),
        actorid=event.get_extension("actorid"),
        partitionkey=event.get_extension("partitionkey"),
        data=event.get_data(),
        legacy_orgid=legacy.get("orgid"),
        legacy_actorid=legacy.get("actorid"),
        legacy_data=legacy.get_data(),
    )


def json_schema_validator(ce_type: str) -> Any:
    """A validator of the event data against shared/schemas/<ce_type>.json (formats too)."""
    schema = json.loads((default_schema_dir() / f"{ce_type}.json").read_text())
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def load_asyncapi(path: Path | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((path or default_asyncapi_path()).read_text())
    return loaded


class AsyncApiMessages:
    """The messages of the AsyncAPI document, by topic and CloudEvents type, with
    validators for their headers, payload and key."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.channels = {c["address"]: c for c in document["channels"].values()}

    def _schema(self, schema: dict[str, Any]) -> Any:
        # payloads $ref into components/schemas: resolve them inside the whole document
        return jsonschema_rs.validator_for(
            {**schema, "components": self.document["components"]}, validate_formats=True
        )

    def message(self, topic: str, ce_type: str | None) -> dict[str, Any]:
        """The message of `topic`'s channel whose `ce_type` header is `ce_type` (the
        only message when the channel has no typed one, as on the dead-letter topic)."""
        channel = self.channels[topic]
        messages = [self._resolve(m["$ref"]) for m in channel["messages"].values()]
        for message in messages:
            const = message["headers"]["properties"].get("ce_type", {}).get("const")
            if const == ce_type or (const is None and len(messages) == 1):
                return message
        raise AssertionError(f"no message of type {ce_type!r} on channel {topic!r}")

    def _resolve(self, ref: str) -> dict[str, Any]:
        node: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        resolved: dict[str, Any] = node
        return resolved

    def errors(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, bytes]
    ) -> list[str]:
        """Everything about one record that its AsyncAPI message does not allow."""
        decoded = {k: v.decode() for k, v in headers.items()}
        message = self.message(topic, decoded.get("ce_type"))
        found = [
            f"header {e.instance_path}: {e.message}"
            for e in self._schema(message["headers"]).iter_errors(decoded)
        ]
        key_schema = message["bindings"]["kafka"]["key"]
        found += [
            f"key: {e.message}" for e in self._schema(key_schema).iter_errors((key or b"").decode())
        ]
        if message["contentType"] == "application/json":
            found += [
                f"payload {e.instance_path}: {e.message}"
                for e in self._schema(message["payload"]).iter_errors(json.loads(value))
            ]
        return found
