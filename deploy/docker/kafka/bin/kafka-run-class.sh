#!/bin/bash
# java with the broker's jars; the apache/kafka image's scripts, reduced.
set -euo pipefail
# the command-line tools start faster with C1 alone; the broker sets KAFKA_JIT_OPTS empty
# (kafka-server-start.sh), since C2's code costs it about a third less CPU per request
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:+UseG1GC ${KAFKA_JIT_OPTS--XX:TieredStopAtLevel=1} \
    -Djava.awt.headless=true \
    -Dlog4j.configuration="file:${KAFKA_LOG4J:-/opt/kafka/bin/log4j.properties}" \
    -cp '/opt/kafka/libs/*' "$@"
