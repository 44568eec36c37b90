"""The anchor of the push API: a no-op FastAPI POST route on the same uvicorn setup."""

from __future__ import annotations

from fastapi import FastAPI


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/noop", status_code=202)
    async def noop() -> dict[str, str]:
        return {"status": "ok"}

    return app
