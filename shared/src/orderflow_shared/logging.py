"""Structured JSON logs (structlog over stdlib logging).

- `configure_logging(service: str, level: str = "INFO") -> None`: one JSON object per
  line on stderr with `timestamp`, `level`, `service`, `event`, plus bound context.
  A processor redacts keys that look secret (password, private_key, secret, token,
  authorization) anywhere in the event dict. Lines written while a span is active
  carry its `trace_id` and `span_id`. It also sets up tracing for the process
  (`orderflow_shared.tracing.configure_tracing`, once), since every service and role
  process calls it first.
- `get_logger(name) -> structlog BoundLogger`.

Records of plain `logging` loggers (uvicorn, aiokafka, this package) go through the
same JSON renderer and redaction.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from orderflow_shared import tracing

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(
    r"pass(word|wd)?|private_?key|secret|token|authorization|api_?key|credential|cookie",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
_PEM = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL
)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^/\s:@]+):[^@\s/]+@", re.IGNORECASE)


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def redact_text(value: str) -> str:
    """Mask secrets that sit inside free text: bearer tokens, PEM keys, URL passwords."""
    value = _BEARER.sub(r"\1 " + REDACTED, value)
    value = _PEM.sub(REDACTED, value)
    return _URL_PASSWORD.sub(r"\g<scheme>:" + REDACTED + "@", value)


def redact(value: Any, _depth: int = 0) -> Any:
    if _depth > 8:
        return value
    if isinstance(value, dict):
        return {
            k: (REDACTED if _is_secret_key(k) and v is not None else redact(v, _depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(v, _depth + 1) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if _is_secret_key(key) and value is not None:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = redact(value)
    return event_dict


def _add_service(service: str) -> structlog.types.Processor:
    def processor(
        _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def configure_logging(service: str, level: str = "INFO", stream: Any = None) -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _add_service(service),
        tracing.add_trace_ids,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_processor,
            structlog.processors.JSONRenderer(default=str),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    tracing.configure_tracing(service)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
