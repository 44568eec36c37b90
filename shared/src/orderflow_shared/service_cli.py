"""What every service's command line shares: its Alembic environment and its HTTP server."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config
    from fastapi import FastAPI

    from orderflow_shared.settings import ServiceSettings


def alembic_config(migrations: Path, url: str, **attributes: Any) -> Config:
    """The Alembic config of a service's `migrations/` dir, connecting with `url`."""
    from alembic.config import Config

    config = Config(str(migrations / "alembic.ini"))
    config.set_main_option("script_location", str(migrations))
    config.attributes["url"] = url
    config.attributes.update(attributes)
    return config


def serve_http(app: FastAPI, settings: ServiceSettings) -> None:
    """uvicorn the same way for every service (logs go through our JSON logging)."""
    import uvicorn

    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        proxy_headers=True,
        access_log=settings.access_log,
    )
