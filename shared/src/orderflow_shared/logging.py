"""Structured JSON logs (structlog over stdlib logging).

- `configure_logging(service: str, level: str = "INFO") -> None`: one JSON object per
  line on stderr with `timestamp`, `level`, `service`, `event`, plus bound context.
  A processor redacts keys that look secret (password, private_key, secret, token,
  authorization) anywhere in the event dict.
- `get_logger(name) -> structlog BoundLogger`.
"""
