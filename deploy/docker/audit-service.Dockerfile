# audit-service: one image, one process per container; the container's command picks the
# role (`python -m audit_service <role>`: serve, ingest, retention-loop), and every role answers
# GET /readyz on HTTP_PORT, which the HEALTHCHECK asks.
# Build from the repo root after `make images` has filled deploy/docker/wheels
# (deploy/docker/build-images.sh does both):
#   docker build -f deploy/docker/audit-service.Dockerfile --build-arg BASE_IMAGE=python:3.12-slim .
# BASE_IMAGE is any Debian-based image with python3 (and its venv module) whose
# Python matches the wheels; on a machine without a registry build-images.sh makes one.
ARG BASE_IMAGE=python:3.12-slim

# --- build: a virtualenv from the wheels only (no index, no compiler) ---------------
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY deploy/docker/wheels /wheels
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links /wheels \
       -r /wheels/audit-service.txt orderflow-shared orderflow-audit-service \
    && /opt/venv/bin/pip uninstall -q -y pip setuptools

# --- runtime: the base plus the virtualenv, as a fixed non-root user ------------------
FROM ${BASE_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
COPY --from=build /opt/venv /opt/venv

# never root: a system user with a fixed uid/gid (numeric USER, so runAsNonRoot can
# check it); the code and the venv stay root-owned and read-only to it. Its only
# writable place is the retention archive (the audit-archive volume; a new volume takes
# this directory's owner).
RUN groupadd --system --gid 10001 orderflow \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin orderflow \
    && mkdir -p /var/lib/orderflow/audit-archive \
    && chown 10001:10001 /var/lib/orderflow/audit-archive \
    && chmod 0750 /var/lib/orderflow/audit-archive
USER 10001:10001

# the HTTP role's port; a container running another role sets its own HTTP_PORT
ENV SERVICE_NAME=audit-service \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8103
EXPOSE 8103

# /readyz of whatever role runs here, on its HTTP_PORT
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=5 \
    CMD ["python", "-c", "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ['HTTP_PORT'], timeout=2).status == 200 else 1)"]

CMD ["python", "-m", "audit_service", "serve"]
