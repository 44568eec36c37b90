"""Events whose claims disagree are filed outside every org's chain; the rest name their
producer and the topic they were read from."""

from __future__ import annotations

import dataclasses
import uuid
from types import ModuleType
from typing import Any

from audit_service.adapters.mapping import (
    UNTRUSTED_ORG,
    RawRecord,
    entry_from_dead_letter,
    entry_from_envelope,
)
from audit_service.domain.entry import GENESIS_HASH, AuditEntry, link_hash
from audit_service.service_layer.ingest import ingest
from orderflow_shared.contracts.events import UNTRUSTED_AUDIT_ACTION
from orderflow_shared.messaging.envelope import Envelope


def _by_action(samples: ModuleType, org: str = "org-a") -> dict[str, Envelope]:
    found: dict[str, Envelope] = {}
    for envelope in samples.flow(org):
        found.setdefault(entry_from_envelope(envelope).action, envelope)
    return found


def test_an_event_on_a_topic_added_later_by_its_producer_is_trusted(samples: ModuleType) -> None:
    created = _by_action(samples)["DRAFT_CREATED"]
    entry = entry_from_envelope(dataclasses.replace(created, record_topic="draft.archived"))
    assert (entry.org_id, entry.action) == ("org-a", "DRAFT_CREATED")
    assert (entry.source_topic, entry.producer) == ("draft.archived", "draft-api")


def test_a_trusted_event_names_its_producer_and_the_topic_it_was_read_from(
    samples: ModuleType,
) -> None:
    pushed = _by_action(samples)["DRAFT_PUSHED"]
    read = dataclasses.replace(pushed, record_topic="draft.push_requested")
    entry = entry_from_envelope(read)
    assert (entry.org_id, entry.action) == ("org-a", "DRAFT_PUSHED")
    assert (entry.source_topic, entry.producer) == ("draft.push_requested", "draft-api")
    sent = entry_from_envelope(_by_action(samples)["EXPORT_SENT"])
    assert sent.producer == "export-service"


def test_an_envelope_org_that_is_not_the_orders_org_is_untrusted(samples: ModuleType) -> None:
    pushed = _by_action(samples, org="victim")["DRAFT_PUSHED"]
    forged = dataclasses.replace(pushed, org_id="attacker")
    entry = entry_from_envelope(forged)
    assert entry.org_id == UNTRUSTED_ORG
    assert entry.action == UNTRUSTED_AUDIT_ACTION
    assert entry.data["envelope_org"] == "attacker"
    assert entry.data["data_org"] == "victim"
    assert entry.data["claimed_action"] == "DRAFT_PUSHED"
    assert "is not the data's org" in entry.data["reasons"][0]


def test_a_connection_change_for_another_org_is_untrusted(samples: ModuleType) -> None:
    changed = _by_action(samples, org="victim")["ERP_CONNECTION_CHANGED"]
    entry = entry_from_envelope(dataclasses.replace(changed, org_id="attacker"))
    assert (entry.org_id, entry.action) == (UNTRUSTED_ORG, UNTRUSTED_AUDIT_ACTION)


def test_an_event_on_a_topic_its_type_does_not_belong_to_is_untrusted(
    samples: ModuleType,
) -> None:
    # export.sent written on a draft-api topic: the principal that wrote it is draft-api's
    sent = _by_action(samples)["EXPORT_SENT"]
    entry = entry_from_envelope(dataclasses.replace(sent, record_topic="draft.created"))
    assert entry.action == UNTRUSTED_AUDIT_ACTION
    assert (entry.source_topic, entry.producer) == ("draft.created", "draft-api")
    assert any("is 'export-service''s, read from draft.created" in r for r in entry.data["reasons"])


def test_a_source_that_is_not_the_topics_producer_is_untrusted(samples: ModuleType) -> None:
    approved = _by_action(samples)["DRAFT_APPROVED"]
    entry = entry_from_envelope(dataclasses.replace(approved, source="/orderflow/export-service"))
    assert entry.action == UNTRUSTED_AUDIT_ACTION
    assert any("is not draft.approved's producer 'draft-api'" in r for r in entry.data["reasons"])


async def test_untrusted_entries_chain_apart_from_the_orgs(
    samples: ModuleType, uow_factory: Any, audit_log: Any
) -> None:
    honest = samples.flow("victim")
    forged = dataclasses.replace(honest[3], org_id="victim-2", id=uuid.uuid4())
    await ingest(uow_factory, [entry_from_envelope(e) for e in [*honest, forged]])
    orgs = [row.entry.org_id for row in audit_log.rows]
    assert orgs.count(UNTRUSTED_ORG) == 1
    assert "victim-2" not in orgs
    untrusted = next(r for r in audit_log.rows if r.entry.org_id == UNTRUSTED_ORG)
    assert untrusted.prev_hash == GENESIS_HASH  # first link of its own chain


def test_the_producer_is_covered_by_the_hash_and_old_entries_hash_as_before(
    samples: ModuleType,
) -> None:
    entry = entry_from_envelope(samples.flow("org-a")[0])
    assert entry.producer == "draft-api"
    without: AuditEntry = dataclasses.replace(entry, producer=None)
    assert b'"producer"' not in without.canonical()
    assert link_hash(GENESIS_HASH, entry) != link_hash(GENESIS_HASH, without)
    assert link_hash(GENESIS_HASH, entry) != link_hash(
        GENESIS_HASH, dataclasses.replace(entry, producer="export-service")
    )


def test_a_record_a_consumer_refused_is_filed_as_untrusted_not_under_its_claimed_org() -> None:
    def dead_letter(reason: bytes) -> RawRecord:
        return RawRecord(
            topic="dead_letter",
            partition=0,
            offset=5,
            timestamp_ms=1_766_831_400_000,
            headers=[
                ("ce_orgid", b"victim"),
                ("dlt_reason", reason),
                ("dlt_topic", b"draft.push_requested"),
                ("dlt_partition", b"1"),
                ("dlt_offset", b"42"),
                ("dlt_consumer", b"export-service"),
            ],
        )

    refused = entry_from_dead_letter(dead_letter(b"refused: envelope org 'a' is not ..."))
    assert refused.org_id == UNTRUSTED_ORG
    assert refused.data["dlt_reason"].startswith("refused:")
    unreadable = entry_from_dead_letter(dead_letter(b"value is not JSON"))
    assert unreadable.org_id == "victim"
