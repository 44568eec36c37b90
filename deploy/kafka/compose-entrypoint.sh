#!/bin/bash
# Compose only: the broker of docker-compose.yml with the same security as the local
# stack (orderflow_devstack.components.Kafka): SASL/SCRAM-SHA-512 on the client
# listeners, PLAIN with a static admin on the controller listener, Kafka's own
# authorizer with no access unless an ACL allows it. The SCRAM users are made when the
# volume is formatted (first start); the ACLs by the `topics` container.
# Passwords come from the environment (.env, made by deploy/kafka/compose-env.sh).
set -euo pipefail
: "${KAFKA_ADMIN_PASSWORD:?}" "${KAFKA_DRAFT_API_PASSWORD:?}" "${KAFKA_EXPORT_SERVICE_PASSWORD:?}"
: "${KAFKA_AUDIT_SERVICE_PASSWORD:?}" "${KAFKA_INTEGRATION_PASSWORD:?}"
DATA=/var/lib/kafka/data
CONFIG=/tmp/orderflow-kafka/server.properties
# one node (`kafka`), or the kafka-cluster profile's three (`kafka`, `kafka-2`, `kafka-3`,
# KAFKA_BROKERS=3): a static quorum, replication 3 and min.insync.replicas 2
BROKERS=${KAFKA_BROKERS:-1}
NODE_ID=${KAFKA_NODE_ID:-1}
NODE_HOST=${KAFKA_NODE_HOST:-kafka}
if [ "$BROKERS" = 1 ]; then
    QUORUM="controller.quorum.bootstrap.servers=kafka:9093"
    FORMAT_MODE=(--standalone)
    REPLICATION=1 MIN_ISR=1
else
    voters="1@kafka:9093"
    for n in $(seq 2 "$BROKERS"); do voters="$voters,$n@kafka-$n:9093"; done
    QUORUM="controller.quorum.voters=$voters"
    FORMAT_MODE=()
    REPLICATION=3 MIN_ISR=2
fi
mkdir -p /tmp/orderflow-kafka
umask 077
cat > "$CONFIG" <<PROPS
process.roles=broker,controller
node.id=${NODE_ID}
${QUORUM}
listeners=SASL://0.0.0.0:9092,EXTERNAL://0.0.0.0:19092,CONTROLLER://0.0.0.0:9093
advertised.listeners=SASL://${NODE_HOST}:9092,EXTERNAL://${KAFKA_EXTERNAL_ADVERTISED:-localhost:19092}
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL
listener.security.protocol.map=SASL:SASL_PLAINTEXT,EXTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
sasl.mechanism.controller.protocol=PLAIN
listener.name.sasl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
listener.name.external.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.external.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}" user_admin="${KAFKA_ADMIN_PASSWORD}";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin
log.dirs=${DATA}
num.partitions=6
default.replication.factor=${REPLICATION}
min.insync.replicas=${MIN_ISR}
auto.create.topics.enable=false
offsets.topic.replication.factor=${REPLICATION}
transaction.state.log.replication.factor=${REPLICATION}
transaction.state.log.min.isr=${MIN_ISR}
share.coordinator.state.topic.replication.factor=${REPLICATION}
share.coordinator.state.topic.min.isr=${MIN_ISR}
group.initial.rebalance.delay.ms=0
PROPS
cat > /tmp/orderflow-kafka/admin.properties <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
PROPS
if [ ! -f "$DATA/meta.properties" ]; then
    scram=()
    for user in admin draft-api export-service audit-service integration; do
        var="KAFKA_$(echo "$user" | tr 'a-z-' 'A-Z_')_PASSWORD"
        scram+=(--add-scram "SCRAM-SHA-512=[name=${user},password=${!var}]")
    done
    /opt/kafka/bin/kafka-storage.sh format "${FORMAT_MODE[@]}" \
        --cluster-id "${KAFKA_CLUSTER_ID:-$(/opt/kafka/bin/kafka-storage.sh random-uuid)}" \
        -c "$CONFIG" "${scram[@]}" >/dev/null
fi
exec /opt/kafka/bin/kafka-server-start.sh "$CONFIG"
