"""Database helpers.

- `make_engine(url, pool_size=10) -> AsyncEngine` (SQLAlchemy asyncio over psycopg 3,
  pool_pre_ping, so a restarted Postgres is reconnected without a service restart).
- `make_session_factory(engine) -> async_sessionmaker[AsyncSession]` (expire_on_commit=False).
- `await db_reachable(engine) -> bool` for /readyz (SELECT 1 with a short timeout).
- `sync_url(url)` turns an async URL into the one Alembic uses.
"""
