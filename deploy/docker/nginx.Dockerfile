# The gateway (nginx, Debian's nginx-light) for the local compose run, with the
# interface of the official nginx image that docker-compose.yml uses: every
# /etc/nginx/templates/*.template is rendered with envsubst (only variables set in
# the environment, so nginx's own $variables stay) into /etc/nginx/conf.d. Master
# and worker run as a fixed non-root user: no `user` line, pid and temp paths in /tmp.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light gettext-base curl \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
       /etc/nginx/sites-enabled/* /etc/nginx/conf.d/* \
    && groupadd --system --gid 10003 gateway \
    && useradd --system --uid 10003 --gid 10003 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin gateway \
    && mkdir -p /etc/nginx/templates /etc/nginx/conf.d \
    && chown 10003:10003 /etc/nginx/conf.d
COPY deploy/docker/nginx/nginx.conf /etc/nginx/nginx.conf
COPY deploy/docker/nginx/entrypoint.sh /usr/local/bin/gateway-entrypoint
USER 10003:10003
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --retries=20 \
    CMD ["sh", "-c", "curl -fsS http://127.0.0.1:${GATEWAY_LISTEN:-8000}/_gateway/healthz >/dev/null"]
ENTRYPOINT ["/usr/local/bin/gateway-entrypoint"]
CMD ["nginx", "-g", "daemon off;"]
