"""The peer's push route: `uvicorn --factory tests.bench.seed_peer.app:make_app`.

POST /draft-orders/{id}/push, as the seed's quickstart has it: Redis `SET NX` on
`idempotency:{draft_id}:{key}`, then one transaction (the draft APPROVED -> PUSHING,
a push attempt row), then the Celery task. No outbox (see the package docstring).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import jwt
import redis.asyncio as aioredis
from celery import Celery
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import create_async_engine

from tests.bench.seed_peer.config import QUEUE, TASK, PeerConfig
from tests.bench.seed_peer.tables import draft_order, push_attempt

KEY_TTL_SECONDS = 24 * 3600
#: as draft-api's engine (orderflow_shared.db): 20 connections, no overflow
POOL_SIZE = 20


def make_app() -> FastAPI:
    cfg = PeerConfig.from_env()
    engine = create_async_engine(cfg.database_url, pool_size=POOL_SIZE, max_overflow=0)
    cache = aioredis.Redis.from_url(cfg.redis_url)
    queue = Celery("seedpeer-api", broker=cfg.redis_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # the pool is opened before the first request, so that no push pays a connect
        async with AsyncExitStack() as opened:
            for _ in range(POOL_SIZE):
                await opened.enter_async_context(engine.connect())
        yield
        await cache.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    def caller(authorization: str | None) -> dict[str, Any]:
        if not authorization or not authorization.startswith("Bearer "):
            raise HTTPException(401, "missing bearer token")
        try:
            claims: dict[str, Any] = jwt.decode(
                authorization.removeprefix("Bearer "),
                cfg.jwt_secret,
                algorithms=["HS256"],
                audience="orderflow",
                issuer="orderflow",
            )
        except jwt.InvalidTokenError:
            raise HTTPException(401, "invalid token") from None
        return claims

    @app.post("/draft-orders/{draft_id}/push", status_code=202)
    async def push(
        draft_id: uuid.UUID,
        authorization: str | None = Header(None),
        idempotency_key: str | None = Header(None, max_length=128),
    ) -> Any:
        claims = caller(authorization)
        org, user = str(claims["org_id"]), str(claims["sub"])
        key = f"idempotency:{draft_id}:{idempotency_key or 'push'}"
        export_id = uuid.uuid4()
        if not await cache.set(key, str(export_id), nx=True, ex=KEY_TTL_SECONDS):
            return await _replay(key, org)
        now = datetime.now(UTC)
        try:
            async with engine.begin() as conn:
                moved = await conn.execute(
                    update(draft_order)
                    .where(
                        draft_order.c.id == draft_id,
                        draft_order.c.org_id == org,
                        draft_order.c.status == "APPROVED",
                    )
                    .values(
                        status="PUSHING",
                        version=draft_order.c.version + 1,
                        current_export_id=export_id,
                        updated_at=now,
                    )
                    .returning(draft_order.c.id)
                )
                if moved.first() is None:
                    found = await conn.scalar(
                        select(draft_order.c.status).where(
                            draft_order.c.id == draft_id, draft_order.c.org_id == org
                        )
                    )
                    if found is None:
                        raise HTTPException(404, "draft not found")
                    raise HTTPException(409, f"draft is {found}, not APPROVED")
                await conn.execute(
                    insert(push_attempt).values(
                        erp_export_id=export_id,
                        draft_id=draft_id,
                        org_id=org,
                        attempt=1,
                        status="PENDING",
                        requested_by_user_id=user,
                        requested_at=now,
                    )
                )
        except BaseException:
            await cache.delete(key)
            raise
        # the crash window the seed's design has: committed, not yet enqueued
        queue.send_task(TASK, args=[str(export_id)], queue=QUEUE)
        return {"erp_export_id": str(export_id), "status": "PUSHING"}

    async def _replay(key: str, org: str) -> JSONResponse:
        earlier = await cache.get(key)
        if earlier is None:  # released by a failed first request meanwhile
            raise HTTPException(409, "retry")
        async with engine.connect() as conn:
            status = await conn.scalar(
                select(push_attempt.c.status).where(
                    push_attempt.c.erp_export_id == uuid.UUID(earlier.decode()),
                    push_attempt.c.org_id == org,
                )
            )
        return JSONResponse(
            {"erp_export_id": earlier.decode(), "status": status or "PENDING"}, status_code=200
        )

    return app
