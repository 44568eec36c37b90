"""Who may do what on the broker: the Kafka principals and the ACL table, in one place.

The broker runs Kafka's own authorizer (`StandardAuthorizer`) with
`allow.everyone.if.no.acl.found=false`, so a principal can do exactly what this table
allows and nothing else; `admin` is the only super user (topic creation, these ACLs).

- `draft-api` produces `draft.*`; consumes `export.*` (the export results) and
  `erp_connection.changed` in groups named `draft-api...`; its console's live feed
  reads `draft.*` and `export.*` without a group (every partition assigned).
- `export-service` produces `export.*` and `erp_connection.changed`; consumes
  `draft.push_requested` in groups named `export-service...`.
- `audit-service` consumes every topic, in groups named `audit-service...` (its
  defaults: `audit-service` and `audit-service.dead-letter`); produces `audit.checkpoint`.
- `integration` (for integrators) consumes the published topics (not `dead_letter`)
  in groups whose name starts with `integration-`; it produces nothing.
- every service produces `dead_letter` (the shared consumer runner dead-letters
  unreadable records).

`await apply_acls(admin_options)` makes the broker's ACLs for these principals equal to
the table (creates the missing ones, deletes the others); it is idempotent.

A group id is owned by the principal whose name it starts with (the defaults of
`CONSUMER_GROUP_ID`, export-service's consumer and `AUDIT_CONSUMER_GROUP` do; a unit
test checks it), so no principal can join, read or commit another's groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest

from orderflow_shared.contracts.topics import Topic
from orderflow_shared.messaging.kafka import KafkaOptions

ADMIN = "admin"
DRAFT_API = "draft-api"
EXPORT_SERVICE = "export-service"
AUDIT_SERVICE = "audit-service"
INTEGRATION = "integration"

#: every principal the stack creates (SCRAM users); `admin` is the super user
PRINCIPALS: tuple[str, ...] = (ADMIN, DRAFT_API, EXPORT_SERVICE, AUDIT_SERVICE, INTEGRATION)
#: the principal each service connects as
SERVICE_PRINCIPALS: dict[str, str] = {
    "draft-api": DRAFT_API,
    "export-service": EXPORT_SERVICE,
    "audit-service": AUDIT_SERVICE,
}
#: consumer groups the integration principal may use start with this
INTEGRATION_GROUP_PREFIX = "integration-"
#: each service's consumer groups start with its name (their settings' defaults are
#: `draft-api`, `export-service`, `audit-service` and `audit-service.dead-letter`)
SERVICE_GROUP_PREFIXES: dict[str, str] = {
    DRAFT_API: "draft-api",
    EXPORT_SERVICE: "export-service",
    AUDIT_SERVICE: "audit-service",
}
#: what integrators read: the contract topics, not the dead letters
PUBLISHED_TOPICS: tuple[str, ...] = tuple(str(t) for t in Topic if t is not Topic.DEAD_LETTER)


class ResourceType(IntEnum):  # Kafka protocol codes
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class PatternType(IntEnum):
    ANY = 1
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    ANY = 1
    READ = 3
    WRITE = 4
    DESCRIBE = 8


_ALLOW = 3
_ANY_PERMISSION = 1
_ANY_HOST = "*"


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule: `principal` may `operation` on a resource (from any host)."""

    principal: str
    resource: ResourceType
    name: str
    pattern: PatternType
    operation: Operation

    def __str__(self) -> str:
        how = "prefix " if self.pattern is PatternType.PREFIXED else ""
        return (
            f"User:{self.principal} {self.operation.name} "
            f"{self.resource.name.lower()} {how}{self.name}"
        )


def _topic(principal: str, name: str, *ops: Operation, prefixed: bool = False) -> list[Acl]:
    pattern = PatternType.PREFIXED if prefixed else PatternType.LITERAL
    return [Acl(principal, ResourceType.TOPIC, name, pattern, op) for op in ops]


def _group(principal: str, name: str, *, prefixed: bool = False) -> Acl:
    pattern = PatternType.PREFIXED if prefixed else PatternType.LITERAL
    return Acl(principal, ResourceType.GROUP, name, pattern, Operation.READ)


def _table() -> tuple[Acl, ...]:
    read, write, describe = Operation.READ, Operation.WRITE, Operation.DESCRIBE
    rules: list[Acl] = []
    # draft-api
    rules += _topic(DRAFT_API, "draft.", write, describe, prefixed=True)
    # the operator console's live feed reads draft.* too (no consumer group)
    rules += _topic(DRAFT_API, "draft.", read, prefixed=True)
    rules += _topic(DRAFT_API, "export.", read, describe, prefixed=True)
    rules += _topic(DRAFT_API, str(Topic.ERP_CONNECTION_CHANGED), read, describe)
    # export-service
    rules += _topic(EXPORT_SERVICE, "export.", write, describe, prefixed=True)
    rules += _topic(EXPORT_SERVICE, str(Topic.ERP_CONNECTION_CHANGED), write, describe)
    rules += _topic(EXPORT_SERVICE, str(Topic.DRAFT_PUSH_REQUESTED), read, describe)
    # audit-service: every topic ("*" is Kafka's wildcard resource name)
    rules += _topic(AUDIT_SERVICE, "*", read, describe)
    # audit-service publishes its signed checkpoints
    rules += _topic(AUDIT_SERVICE, str(Topic.AUDIT_CHECKPOINT), write, describe)
    # dead letters: any service's consumer runner may produce one
    for principal, prefix in SERVICE_GROUP_PREFIXES.items():
        rules += _topic(principal, str(Topic.DEAD_LETTER), write, describe)
        rules.append(_group(principal, prefix, prefixed=True))
    # integrators: read-only, their own groups
    for topic in PUBLISHED_TOPICS:
        rules += _topic(INTEGRATION, topic, read, describe)
    rules.append(_group(INTEGRATION, INTEGRATION_GROUP_PREFIX, prefixed=True))
    return tuple(sorted(set(rules)))


#: The whole table (sorted, no duplicates).
ACLS: tuple[Acl, ...] = _table()


def allows(
    principal: str,
    operation: Operation,
    resource: ResourceType,
    name: str,
    acls: Iterable[Acl] = ACLS,
) -> bool:
    """What the broker decides for a non-super user, from the table alone (READ, WRITE
    imply DESCRIBE as in Kafka); for docs and tests."""
    implied = {operation}
    if operation is Operation.DESCRIBE:
        implied |= {Operation.READ, Operation.WRITE}
    for acl in acls:
        if acl.principal != principal or acl.resource is not resource:
            continue
        if acl.operation not in implied:
            continue
        if acl.pattern is PatternType.PREFIXED and name.startswith(acl.name):
            return True
        if acl.pattern is PatternType.LITERAL and acl.name in (name, "*"):
            return True
    return False


class AclError(RuntimeError):
    """The broker refused to list, create or delete an ACL."""


async def apply_acls(admin: KafkaOptions, acls: Iterable[Acl] = ACLS) -> tuple[int, int]:
    """Make the broker's ACLs of the managed principals equal `acls`; returns
    (created, deleted). `admin` are the connection options of a super user."""
    wanted = set(acls)
    managed = {f"User:{p}" for p in PRINCIPALS} | {f"User:{a.principal}" for a in wanted}
    client = AIOKafkaClient(**{**admin, "client_id": "orderflow-acls"})
    await client.bootstrap()
    try:
        existing = await _describe(client)
        ours = {acl for acl in existing if f"User:{acl.principal}" in managed}
        for acl in sorted(wanted - ours):
            await _send(client, CreateAclsRequest(*_wire(acl)), "creation_responses", acl)
        for acl in sorted(ours - wanted):
            await _send(client, DeleteAclsRequest(*_wire(acl)), "filter_responses", acl)
    finally:
        await client.close()
    return len(wanted - ours), len(ours - wanted)


async def describe_acls(admin: KafkaOptions) -> set[Acl]:
    """Every ALLOW ACL on the broker that this module can express."""
    client = AIOKafkaClient(**{**admin, "client_id": "orderflow-acls"})
    await client.bootstrap()
    try:
        return await _describe(client)
    finally:
        await client.close()


def _wire(acl: Acl) -> tuple[int, str, int, str, str, int, int]:
    return (
        int(acl.resource),
        acl.name,
        int(acl.pattern),
        f"User:{acl.principal}",
        _ANY_HOST,
        int(acl.operation),
        _ALLOW,
    )


async def _describe(client: AIOKafkaClient) -> set[Acl]:
    request = DescribeAclsRequest(
        int(ResourceType.ANY),
        None,  # null: any name
        int(PatternType.ANY),
        None,  # any principal
        None,  # any host
        int(Operation.ANY),
        _ANY_PERMISSION,
    )
    response: Any = await client.send(client.get_random_node(), request)
    if response.error_code:
        raise AclError(f"describe ACLs: error {response.error_code} {response.error_message}")
    found: set[Acl] = set()
    for resource_type, name, pattern, entries in response.resources:
        for principal, host, operation, permission in entries:
            if permission != _ALLOW or host != _ANY_HOST or not principal.startswith("User:"):
                continue
            try:
                acl = Acl(
                    principal.removeprefix("User:"),
                    ResourceType(resource_type),
                    name,
                    PatternType(pattern),
                    Operation(operation),
                )
            except ValueError:
                continue  # an operation or resource type this table never uses
            found.add(acl)
    return found


async def _send(client: AIOKafkaClient, request: Any, field: str, acl: Acl) -> None:
    response: Any = await client.send(client.get_random_node(), request)
    for entry in getattr(response, field):
        code, message = entry[0], entry[1]
        if code:
            raise AclError(f"{type(request).__name__} {acl}: error {code} {message}")
