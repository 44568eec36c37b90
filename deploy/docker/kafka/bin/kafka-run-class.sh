#!/bin/bash
# java with the broker's jars; the apache/kafka image's scripts, reduced.
set -euo pipefail
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:+UseG1GC -XX:TieredStopAtLevel=1 \
    -Djava.awt.headless=true \
    -Dlog4j.configuration="file:${KAFKA_LOG4J:-/opt/kafka/bin/log4j.properties}" \
    -cp '/opt/kafka/libs/*' "$@"
