"""Every event type of the contract registry, as the envelope writes it, reads in the
official `cloudevents` SDK with its extensions, matches its JSON Schema and its AsyncAPI
message; records with the pre-`ce_` extension headers stay readable."""

from __future__ import annotations

import types
import typing
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from orderflow_shared.contracts.events import EVENT_SPECS, EventData, EventSpec
from orderflow_shared.contracts.services import (
    LEGACY_SOURCES,
    Service,
    expected_source,
    producer_of,
    service_of_source,
    source_for,
    source_matches,
    system_actor,
)
from orderflow_shared.contracts.topics import ALL_TOPICS, DEAD_LETTER_TOPIC
from orderflow_shared.messaging.envelope import Envelope, EnvelopeError
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tests.contract_checks import (
    AsyncApiMessages,
    header_dict,
    json_schema_validator,
    load_asyncapi,
    parse_with_sdk,
)

# --- instances of any contract model, from its fields ---------------------------------


def _constraint(info: FieldInfo, name: str) -> Any:
    for item in info.metadata:
        if hasattr(item, name):
            return getattr(item, name)
    return None


def _strategy(annotation: Any, info: FieldInfo | None = None) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return st.sampled_from(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_strategy(a, info) for a in typing.get_args(annotation)))
    if origin is list:
        return st.lists(_strategy(typing.get_args(annotation)[0]), max_size=3)
    if annotation is type(None):
        return st.none()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _instances(annotation)
    if annotation is uuid.UUID:
        return st.uuids()
    if annotation is datetime:
        return st.datetimes(timezones=st.just(UTC))
    if annotation is bool:
        return st.booleans()
    if annotation is Decimal:
        return st.decimals(min_value=0, max_value=10**6, places=2)
    ge = _constraint(info, "ge") if info else None
    if annotation is int:
        return st.integers(min_value=ge if ge is not None else 0, max_value=10**6)
    if annotation is str:
        pattern = _constraint(info, "pattern") if info else None
        if pattern:
            return st.from_regex(pattern, fullmatch=True)
        low = (_constraint(info, "min_length") if info else None) or 0
        high = (_constraint(info, "max_length") if info else None) or 40
        return st.text(st.characters(codec="utf-8"), min_size=low, max_size=high)
    raise TypeError(f"no strategy for {annotation!r}: extend _strategy for the new contract")


def _instances(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    fields = {name: _strategy(f.annotation, f) for name, f in model.model_fields.items()}
    return st.builds(model, **fields)


def _ids(spec: EventSpec) -> str:
    return spec.ce_type


def _wrap(spec: EventSpec, data: EventData, actor: str) -> Envelope:
    producer = producer_of(spec.topic)
    assert producer is not None, f"{spec.topic} has no producer"
    subject = str(uuid.uuid4())
    return Envelope.wrap(
        data,
        source=source_for(producer),
        subject=subject,
        key=subject,
        org_id="org-ce",
        actor_id=actor,
    )


ASYNCAPI = AsyncApiMessages(load_asyncapi())


@pytest.mark.parametrize("spec", EVENT_SPECS, ids=_ids)
def test_every_event_type_reads_in_the_cloudevents_sdk_with_its_extensions(
    spec: EventSpec,
) -> None:
    validator = json_schema_validator(spec.ce_type)

    @settings(max_examples=25, deadline=None)
    @given(data=_instances(spec.model), actor=st.sampled_from(["user-1", "system:x"]))
    def check(data: EventData, actor: str) -> None:
        envelope = _wrap(spec, data, actor)
        headers = envelope.kafka_headers()
        key = envelope.key.encode()
        view = parse_with_sdk(key, envelope.data, headers)
        assert (view.type, view.source, view.id, view.subject) == (
            spec.ce_type,
            envelope.source,
            str(envelope.id),
            envelope.subject,
        )
        assert (view.orgid, view.actorid) == ("org-ce", actor)
        assert (view.legacy_orgid, view.legacy_actorid) == ("org-ce", actor)
        assert view.partitionkey == envelope.key  # the SDK decodes the key
        assert view.data == view.legacy_data == envelope.data_json()
        errors = [e.message for e in validator.iter_errors(view.data)]
        assert errors == [], f"{spec.ce_type} data does not match its JSON Schema: {errors}"
        errors = ASYNCAPI.errors(str(spec.topic), key, envelope.data, header_dict(headers))
        assert errors == [], f"{spec.ce_type} record does not match its AsyncAPI message"

    check()


def test_the_extension_headers_have_the_ce_prefix_and_valid_names() -> None:
    spec = EVENT_SPECS[0]
    headers = dict(_wrap(spec, _example(spec), "user-1").kafka_headers())
    assert headers["ce_orgid"] == b"org-ce"
    assert headers["ce_actorid"] == b"user-1"
    assert "orgid" not in headers and "actorid" not in headers
    for name in headers:
        assert name.startswith("ce_") or name in ("content-type", "traceparent"), name
        assert name.removeprefix("ce_").replace("-", "").isalnum()


def _example(spec: EventSpec) -> Any:
    """The simplest instance of the event's model (deterministic)."""
    return find(_instances(spec.model), lambda _: True)


# --- the change of header names ------------------------------------------------------


def _legacy(headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    renamed = {"ce_orgid": "orgid", "ce_actorid": "actorid"}
    return [(renamed.get(n, n), v) for n, v in headers]


@pytest.mark.parametrize("spec", EVENT_SPECS, ids=_ids)
def test_records_with_the_old_extension_headers_stay_readable(spec: EventSpec) -> None:
    envelope = _wrap(spec, _example(spec), "user-7")
    old = _legacy(envelope.kafka_headers())
    assert ("orgid", b"org-ce") in old and not any(n == "ce_orgid" for n, _ in old)
    back = Envelope.from_kafka(envelope.key.encode(), envelope.data, old)
    assert (back.org_id, back.actor_id, back.extra_headers) == ("org-ce", "user-7", {})
    assert back.parse() == envelope.parse()


def test_both_header_sets_agreeing_read_as_one() -> None:
    envelope = _wrap(EVENT_SPECS[0], _example(EVENT_SPECS[0]), "user-7")
    both = [*envelope.kafka_headers(), ("orgid", b"org-ce"), ("actorid", b"user-7")]
    back = Envelope.from_kafka(envelope.key.encode(), envelope.data, both)
    assert (back.org_id, back.actor_id, back.extra_headers) == ("org-ce", "user-7", {})


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (("orgid", b"org-other"), "ce_orgid and orgid disagree"),
        (("actorid", b"mallory"), "ce_actorid and actorid disagree"),
    ],
)
def test_old_and_new_headers_that_disagree_are_unreadable(
    extra: tuple[str, bytes], reason: str
) -> None:
    envelope = _wrap(EVENT_SPECS[0], _example(EVENT_SPECS[0]), "user-7")
    with pytest.raises(EnvelopeError, match=reason):
        Envelope.from_kafka(b"k", envelope.data, [*envelope.kafka_headers(), extra])


def test_a_record_with_no_org_under_either_name_is_unreadable() -> None:
    envelope = _wrap(EVENT_SPECS[0], _example(EVENT_SPECS[0]), "user-7")
    headers = [(n, v) for n, v in envelope.kafka_headers() if n != "ce_orgid"]
    with pytest.raises(EnvelopeError, match=r"missing header.*ce_orgid"):
        Envelope.from_kafka(b"k", envelope.data, headers)


def test_an_old_record_without_an_actor_reads_with_none() -> None:
    envelope = _wrap(EVENT_SPECS[0], _example(EVENT_SPECS[0]), "user-7")
    old = [(n, b"" if n == "actorid" else v) for n, v in _legacy(envelope.kafka_headers())]
    assert Envelope.from_kafka(b"k", envelope.data, old).actor_id is None


# --- actors and sources --------------------------------------------------------------


@pytest.mark.parametrize("actor", ["", None])
def test_an_event_without_an_actor_cannot_be_built(actor: Any) -> None:
    with pytest.raises(ValueError, match="every event has an actor"):
        Envelope.wrap(
            _example(EVENT_SPECS[0]), source="/orderflow/x", subject="s", org_id="o", actor_id=actor
        )


def test_the_system_actor_and_source_conventions() -> None:
    assert source_for("export-service") == "/orderflow/export-service"
    assert system_actor(Service.EXPORT_SERVICE) == "system:export-service"
    with pytest.raises(ValueError):
        source_for("mallory")
    assert service_of_source("/orderflow/draft-api") is Service.DRAFT_API
    assert service_of_source("export-service") is Service.EXPORT_SERVICE  # written before
    assert service_of_source("/mallory") is None
    assert LEGACY_SOURCES == {"export-service": Service.EXPORT_SERVICE}


def test_every_topic_but_the_dead_letter_one_has_a_producer_and_source() -> None:
    for topic in ALL_TOPICS:
        if topic == DEAD_LETTER_TOPIC:
            assert producer_of(topic) is None and expected_source(topic) is None
        else:
            assert producer_of(topic) is not None, topic
    assert expected_source("draft.approved") == "/orderflow/draft-api"
    assert expected_source("export.sent") == "/orderflow/export-service"
    assert source_matches("export.sent", "export-service")
    assert source_matches("erp_connection.changed", "/orderflow/export-service")
    assert not source_matches("export.sent", "/orderflow/draft-api")
    assert not source_matches("dead_letter", "/orderflow/draft-api")


def test_the_services_wrap_their_events_with_the_convention() -> None:
    from draft_api.adapters import event_mapping
    from export_service.adapters import event_mapping as export_mapping

    assert event_mapping.MAPPING.source == source_for(Service.DRAFT_API)
    assert event_mapping.MAPPING.system_actor == "system:draft-api"
    assert export_mapping.MAPPING.source == "/orderflow/export-service"
    assert export_mapping.MAPPING.system_actor == "system:export-service"
