#!/bin/bash
# Compose only: make (or complete) the repo's .env with generated secrets, so that no
# password of docker-compose.yml is a constant in the repository. Run once before
# `docker compose up`; existing values are kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
touch .env
chmod 600 .env
for name in KAFKA_ADMIN_PASSWORD KAFKA_DRAFT_API_PASSWORD KAFKA_EXPORT_SERVICE_PASSWORD \
    KAFKA_AUDIT_SERVICE_PASSWORD KAFKA_INTEGRATION_PASSWORD; do
    if ! grep -q "^${name}=" .env; then
        echo "${name}=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')" >> .env
    fi
done
echo "wrote .env; integrators log in as 'integration' with KAFKA_INTEGRATION_PASSWORD from it"
