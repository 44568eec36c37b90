#!/bin/bash
# Compose only: make (or complete) the stack's .env with generated secrets, so that no
# password or key of docker-compose.yml is a constant in the repository. `make
# compose-up` runs it; existing values are kept (a stack keeps its secrets across
# restarts; `make compose-down CLEAN=1` removes .env with the volumes).
# Also the SFTP client key pair of the stack (.run-compose/sftp_client_key): its public
# half goes to the dropzone as SFTP_AUTHORIZED_KEY, the private half to the demo
# connection that the seed creates.
set -euo pipefail
cd "$(dirname "$0")/../.."
ENV_FILE=${ORDERFLOW_COMPOSE_ENV:-.env}
KEYS=${ORDERFLOW_COMPOSE_STATE:-.run-compose}
touch "$ENV_FILE"
chmod 600 "$ENV_FILE"
random() { head -c "$1" /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }
add() {  # add NAME VALUE, unless NAME is set already
    grep -q "^$1=" "$ENV_FILE" || echo "$1=$2" >> "$ENV_FILE"
}
for name in KAFKA_ADMIN_PASSWORD KAFKA_DRAFT_API_PASSWORD KAFKA_EXPORT_SERVICE_PASSWORD \
    KAFKA_AUDIT_SERVICE_PASSWORD KAFKA_INTEGRATION_PASSWORD POSTGRES_PASSWORD \
    DRAFT_API_DB_PASSWORD EXPORT_SERVICE_DB_PASSWORD AUDIT_OWNER_DB_PASSWORD \
    AUDIT_SERVICE_DB_PASSWORD; do
    add "$name" "$(random 18)"
done
# the KRaft cluster id every node of the stack is formatted with (16 bytes, base64url)
add KAFKA_CLUSTER_ID "$(random 16)"
# HS256 signing key of the stack's tokens; the export-service's AES key (32 bytes)
add JWT_SECRET "$(random 48)"
add EXPORT_ENCRYPTION_KEY "$(head -c 32 /dev/urandom | base64 | tr '+/' '-_')"
# audit-service's Ed25519 checkpoint signing key (32 random bytes, base64)
add AUDIT_SIGNING_KEY "$(head -c 32 /dev/urandom | base64)"
mkdir -p "$KEYS"
chmod 700 "$KEYS"
if [ ! -f "$KEYS/sftp_client_key" ]; then
    ssh-keygen -q -t ed25519 -N '' -C orderflow-compose -f "$KEYS/sftp_client_key"
fi
add SFTP_AUTHORIZED_KEY "\"$(cat "$KEYS/sftp_client_key.pub")\""
echo "compose: secrets in $ENV_FILE; integrators log in to Kafka as 'integration' with KAFKA_INTEGRATION_PASSWORD from it"
