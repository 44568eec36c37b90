"""Use case of delivery circuits: what an admin sees of a connection's circuit."""

from __future__ import annotations

import uuid
from datetime import datetime

from export_service.domain.circuit import Circuit
from export_service.service_layer.ports import UnitOfWork


async def circuit_of(
    uow: UnitOfWork, org_id: str, connection_id: uuid.UUID, created_at: datetime
) -> Circuit:
    """The connection's circuit; closed since the connection was made when its
    deliveries never failed."""
    async with uow:
        found = await uow.circuits.get(org_id, connection_id)
    return found or Circuit.closed(connection_id, org_id, created_at)
