"""FastAPI building blocks every service uses.

- `install_error_handlers(app)`: JSON bodies with `detail` for every error; 422 for
  request validation (with `detail` a list of pydantic errors, no input echoed for
  secrets); unexpected exceptions → 500 `{"detail": "Internal error"}` logged with a
  request id (must never happen, but never leaks internals).
- `body_size_limit(app, max_bytes=1_048_576)`: 413 with `detail` for larger bodies.
- `health_router(checks: dict[str, Callable[[], Awaitable[bool]]]) -> APIRouter` with
  `GET /livez` (200 `{"status": "ok"}`, no dependency checks) and `GET /readyz`
  (200 or 503 with `{"status": ..., "checks": {name: "ok"|"fail"}}`).
- `metrics_router() -> APIRouter`: `GET /metrics` (prometheus_client exposition), plus
  `install_http_metrics(app, service)` middleware: request count and latency histogram
  by route template and status.
"""
