"""The wire contracts stay out of the domains (issue 11, "one path from domain events to
the outbox"), held by reading the source.

A domain records domain events of its own; one adapter module per service
(`adapters/event_mapping.py`) turns them into contracts, and inbound records become
domain values in adapters too (audit-service's `adapters/mapping.py`). So a module
under `<service>/domain/` imports nothing from `orderflow_shared.messaging` and, from
`orderflow_shared.contracts`, only these names, none of them an event:

- `OrderSnapshot`, `OrderLineSnapshot`: the approved order export-service renders, the
  input a person approved (a value object, not a message);
- `ExportStatus`: the status vocabulary the services share;
- `SIGNING_CONTEXT`: the prefix of the bytes audit-service's checkpoint signature
  covers (the checkpoint's record, `AuditCheckpointV1`, is built in
  `adapters/checkpoint_topic.py`).

import-linter holds `orderflow_shared.messaging` out too (it sees modules, not the
names imported from them, hence this test for the names)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOMAINS = sorted(ROOT.glob("services/*/src/*/domain"))
ALLOWED = {
    "orderflow_shared.contracts": {"OrderSnapshot", "OrderLineSnapshot"},
    "orderflow_shared.contracts.events": {"OrderSnapshot", "OrderLineSnapshot"},
    "orderflow_shared.contracts.export_status": {"ExportStatus"},
    "orderflow_shared.contracts.checkpoints": {"SIGNING_CONTEXT"},
}
GUARDED = ("orderflow_shared.contracts", "orderflow_shared.messaging")


def _guarded(module: str) -> bool:
    return any(module == g or module.startswith(g + ".") for g in GUARDED)


def wire_imports(source: str, where: str = "<source>") -> list[str]:
    """The imports of a module that bring a wire contract (or messaging) into it."""
    found = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if _guarded(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and _guarded(node.module):
            allowed = ALLOWED.get(node.module, set())
            found += [
                f"from {node.module} import {a.name}" for a in node.names if a.name not in allowed
            ]
    return found


def test_every_service_domain_is_read() -> None:
    names = {d.parent.name for d in DOMAINS}
    assert names == {"draft_api", "export_service", "audit_service"}
    assert all(len(list(d.glob("*.py"))) > 2 for d in DOMAINS)


def test_no_domain_imports_a_wire_contract() -> None:
    found = [
        f"{path.relative_to(ROOT)}: {line}"
        for domain in DOMAINS
        for path in sorted(domain.rglob("*.py"))
        for line in wire_imports(path.read_text(), str(path))
    ]
    assert not found, "wire contracts in a domain (map them in adapters): " + "; ".join(found)


def test_the_rule_finds_what_it_forbids() -> None:
    planted = (
        "from orderflow_shared.contracts import ExportSentV1, OrderSnapshot\n"
        "from orderflow_shared.contracts.events import EventData\n"
        "from orderflow_shared.contracts.checkpoints import AuditCheckpointV1, SIGNING_CONTEXT\n"
        "from orderflow_shared.messaging.envelope import Envelope\n"
        "import orderflow_shared.messaging.outbox\n"
        "from orderflow_shared.contracts.export_status import ExportStatus\n"
        "from orderflow_shared.timing import backoff\n"
        "def f():\n    from orderflow_shared.contracts import DraftApprovedV1\n"
    )
    assert wire_imports(planted) == [
        "from orderflow_shared.contracts import ExportSentV1",
        "from orderflow_shared.contracts.events import EventData",
        "from orderflow_shared.contracts.checkpoints import AuditCheckpointV1",
        "from orderflow_shared.messaging.envelope import Envelope",
        "import orderflow_shared.messaging.outbox",
        "from orderflow_shared.contracts import DraftApprovedV1",
    ]
