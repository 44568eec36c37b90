"""What the console keeps per process: settings, one HTTP client, the feed, templates."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jinja2

from draft_api.console.api import Api
from draft_api.console.feed import Feed
from draft_api.console.settings import ConsoleSettings

HERE = Path(__file__).parent


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


@dataclass
class ConsoleState:
    settings: ConsoleSettings
    client: httpx.AsyncClient
    feed: Feed
    templates: jinja2.Environment
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def urls(self) -> dict[str, str]:
        s = self.settings
        return {
            "draft-api": s.console_draft_api_url.rstrip("/"),
            "export-service": s.console_export_service_url.rstrip("/"),
            "audit-service": s.console_audit_service_url.rstrip("/"),
        }

    def api(self, token: str) -> Api:
        return Api(self.client, self.urls, token)

    def start_feed(self) -> None:
        """Run the feed from the first page that asks for it on (a process nobody has
        the console open on consumes nothing)."""
        if self.task is None and self.settings.console_feed and not self.stop.is_set():
            self.task = asyncio.create_task(self.feed.run(self.stop), name="console-feed")
