"""Who produces and who consumes each topic, and how a service names itself in events.

The one place for these conventions (envelopes, the audit trail's checks and the
AsyncAPI document all read them from here):

- **source**: every event a service produces has the CloudEvents `source`
  `/orderflow/<service>` (`source_for`), e.g. `/orderflow/draft-api`. Records written
  before this convention by export-service carry `export-service`; `source_matches`
  still accepts them (`LEGACY_SOURCES`), so no record in the topics becomes suspect.
- **actor** (`ce_actorid`): never empty. A step a person asked for carries their user id
  (the JWT `sub`); a step a service takes on its own (delivery results, retries) carries
  the system actor `system:<service>` (`system_actor`), e.g. `system:export-service`.
- **producer**: a topic belongs to the service that owns its first name segment
  (`draft.*` → draft-api; `export.*` and `erp_connection.*` → export-service), so a
  topic added later has its owner without a new table entry. `dead_letter` has no single
  producer: every consumer writes there.
- **consumers**: `SUBSCRIPTIONS` lists each consumer group and what it reads (a unit test
  holds the services to it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from orderflow_shared.contracts.topics import DEAD_LETTER_TOPIC, Topic

SOURCE_PREFIX = "/orderflow/"
SYSTEM_ACTOR_PREFIX = "system:"


class Service(StrEnum):
    DRAFT_API = "draft-api"
    EXPORT_SERVICE = "export-service"
    AUDIT_SERVICE = "audit-service"


def source_for(service: str) -> str:
    """The CloudEvents `source` of every event `service` produces."""
    return f"{SOURCE_PREFIX}{Service(service)}"


def system_actor(service: str) -> str:
    """The actor id of a step `service` takes without a person asking for it."""
    return f"{SYSTEM_ACTOR_PREFIX}{Service(service)}"


def is_system_actor(actor_id: str) -> bool:
    return actor_id.startswith(SYSTEM_ACTOR_PREFIX)


#: Sources written before the `/orderflow/<service>` convention (still in the topics).
LEGACY_SOURCES: dict[str, Service] = {"export-service": Service.EXPORT_SERVICE}

_OWNER_BY_DOMAIN: dict[str, Service] = {
    "draft": Service.DRAFT_API,
    "export": Service.EXPORT_SERVICE,
    "erp_connection": Service.EXPORT_SERVICE,
    "audit": Service.AUDIT_SERVICE,
}


def service_of_source(source: str) -> Service | None:
    """The service a `source` names (current or legacy form); None if it names none."""
    if source in LEGACY_SOURCES:
        return LEGACY_SOURCES[source]
    if source.startswith(SOURCE_PREFIX):
        try:
            return Service(source[len(SOURCE_PREFIX) :])
        except ValueError:
            return None
    return None


def producer_of(topic: str) -> Service | None:
    """The service that produces `topic`; None for the dead-letter topic or a foreign topic."""
    if topic == DEAD_LETTER_TOPIC:
        return None
    return _OWNER_BY_DOMAIN.get(str(topic).split(".", 1)[0])


def expected_source(topic: str) -> str | None:
    """The `source` records of `topic` must have (None: any, as on the dead-letter topic)."""
    producer = producer_of(topic)
    return source_for(producer) if producer else None


def source_matches(topic: str, source: str) -> bool:
    """True when `source` names the service that produces `topic` (legacy forms included)."""
    producer = producer_of(topic)
    return producer is not None and service_of_source(source) is producer


@dataclass(frozen=True)
class Subscription:
    """One consumer group: which service runs it and which topics it reads (names of
    `Topic`s; a unit test holds them to the enum and to the services' own lists)."""

    service: Service
    group_id: str
    topics: tuple[str, ...] = ()
    pattern: str | None = None
    description: str = ""

    def covers(self, topic: str) -> bool:
        if self.pattern is not None:
            return re.fullmatch(self.pattern, str(topic)) is not None
        return str(topic) in self.topics


#: Topics audit-service reads by pattern (new matching topics are picked up as created).
AUDIT_TOPIC_PATTERN = r"^(draft|export|erp_connection)\..+$"

SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(
        Service.EXPORT_SERVICE,
        "export-service",
        topics=(Topic.DRAFT_PUSH_REQUESTED.value,),
        description="Records each push request and delivers the order to the ERP.",
    ),
    Subscription(
        Service.DRAFT_API,
        "draft-api",
        topics=("export.sent", "export.failed", "export.delayed", "erp_connection.changed"),
        description="Moves drafts to PUSHED or ERROR; keeps each org's connector state.",
    ),
    Subscription(
        Service.AUDIT_SERVICE,
        "audit-service",
        pattern=AUDIT_TOPIC_PATTERN,
        description="Appends every event to the organisation's hash-chained audit log.",
    ),
    Subscription(
        Service.AUDIT_SERVICE,
        "audit-service.dead-letter",
        topics=(DEAD_LETTER_TOPIC.value,),
        description="Records every unreadable record as an UNREADABLE_EVENT audit entry.",
    ),
)


def subscriptions_of(topic: str) -> list[Subscription]:
    return [s for s in SUBSCRIPTIONS if s.covers(topic)]
