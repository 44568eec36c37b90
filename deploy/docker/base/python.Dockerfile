# The local stand-in for python:3.12-slim where no registry is reachable: Debian
# bookworm's own Python (3.11) on the debootstrap base that build-images.sh imports.
# Only the interpreter, its venv module and the CA bundle; no compiler, no docs.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/info/* \
    && ln -sf /usr/bin/python3 /usr/local/bin/python
