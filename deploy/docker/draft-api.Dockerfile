# draft-api: one container, `python -m draft_api serve` (HTTP + background loops).
# Build from the repo root: docker build -f deploy/docker/draft-api.Dockerfile .
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN pip install --no-cache-dir uv

WORKDIR /app
# the uv workspace: one lock file, every member's metadata
COPY pyproject.toml uv.lock ./
COPY shared ./shared
COPY services ./services
COPY deploy/devstack ./deploy/devstack
RUN uv sync --frozen --no-dev --package orderflow-draft-api

# never root: a system user with a fixed uid/gid (numeric USER, so runAsNonRoot can
# check it); the code and the venv stay root-owned and read-only to it, and it has no
# writable directory of its own (it keeps no files).
RUN groupadd --system --gid 10001 orderflow \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin orderflow
USER 10001:10001

ENV SERVICE_NAME=draft-api \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8101
EXPOSE 8101

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=5 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8101/readyz', timeout=2).status == 200 else 1)"

CMD ["python", "-m", "draft_api", "serve"]
