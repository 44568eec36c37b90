#!/bin/bash
# the broker in the foreground: kafka-server-start.sh <server.properties>
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
export KAFKA_JIT_OPTS="${KAFKA_JIT_OPTS-}"
exec /opt/kafka/bin/kafka-run-class.sh kafka.Kafka "$@"
