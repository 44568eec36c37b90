"""Consumer runner: manual offset commits after the DB commit, dead letters for poison.

Contract:

    runner = ConsumerRunner(
        bootstrap_servers=..., group_id="export-service", topics=[Topic.DRAFT_PUSH_REQUESTED],
        handler=handle_batch, client_id="export-service",
    )
    await runner.run(stop)          # until stop is set

`handler(events: list[Envelope]) -> Awaitable[None]` gets the readable records of one
fetch (in partition order), applies them (typically one DB transaction using
`inbox.claim` per event) and returns after the commit. Only then does the runner
commit the offsets of that batch. If the handler raises, nothing is committed; the
runner seeks back to the last committed offsets and retries the batch with backoff
(the error is logged with the event ids, and counted in a Prometheus counter).

A record that `Envelope.from_kafka` rejects (EnvelopeError) or whose `parse()` fails is
produced to `dead_letter` with headers `dlt_reason`, `dlt_topic`, `dlt_partition`,
`dlt_offset`, `dlt_consumer` (plus the original headers and value) before its offset
is committed, and the runner carries on. Consumers use `enable_auto_commit=False`,
`auto_offset_reset="earliest"`, `isolation_level="read_committed"`. Topics may
also be a regex pattern (`pattern=`) for the audit service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orderflow_shared.messaging.envelope import Envelope

BatchHandler = Callable[[list["Envelope"]], Awaitable[None]]


class ConsumerRunner:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        group_id: str,
        handler: BatchHandler,
        topics: Sequence[str] = (),
        pattern: str | None = None,
        client_id: str | None = None,
        max_batch: int = 500,
    ) -> None:
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        raise NotImplementedError

    async def ready(self) -> bool:
        """True once the consumer has joined its group (for /readyz)."""
        raise NotImplementedError
