# Postgres 15 (Debian's) for the local compose run, with the interface of the official
# postgres image that docker-compose.yml uses: POSTGRES_USER/POSTGRES_PASSWORD, the
# scripts in /docker-entrypoint-initdb.d run once on an empty data volume, data in
# /var/lib/postgresql/data, pg_isready. Runs as the `postgres` user, never root.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
    && mkdir -p /var/lib/postgresql/data /docker-entrypoint-initdb.d /run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /run/postgresql \
    && chmod 0700 /var/lib/postgresql/data
COPY deploy/docker/postgres/entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
VOLUME ["/var/lib/postgresql/data"]
HEALTHCHECK --interval=5s --timeout=3s --retries=20 \
    CMD ["pg_isready", "-h", "127.0.0.1", "-U", "postgres"]
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
