# Kafka 4.0 (KRaft) for the local compose run: the Maven jars the local stack
# downloads (deploy/kafka/pom.xml, `make install`) on Debian's Java 17 runtime, with
# the paths of the apache/kafka image that docker-compose.yml uses
# (/opt/kafka/bin/kafka-storage.sh, kafka-server-start.sh,
# kafka-broker-api-versions.sh). Runs as a fixed non-root user.
# Build context: a directory with libs/ (the jars) and bin/ (deploy/docker/kafka/bin),
# which build-images.sh stages.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
    && groupadd --system --gid 10002 kafka \
    && useradd --system --uid 10002 --gid 10002 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin kafka \
    && mkdir -p /var/lib/kafka/data /opt/kafka/config \
    && chown 10002:10002 /var/lib/kafka/data
COPY libs /opt/kafka/libs
COPY bin /opt/kafka/bin
USER 10002:10002
EXPOSE 9092 9093
VOLUME ["/var/lib/kafka/data"]
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=20 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9092"]
CMD ["/opt/kafka/bin/kafka-server-start.sh", "/opt/kafka/config/server.properties"]
