#!/bin/bash
# Compose only (the postgres image runs it once, on an empty volume): the same
# database, schemas and roles the local stack creates (docs/DEVELOPING.md).
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v draft_pw="$DRAFT_API_DB_PASSWORD" \
    -v export_pw="$EXPORT_SERVICE_DB_PASSWORD" \
    -v audit_owner_pw="$AUDIT_OWNER_DB_PASSWORD" \
    -v audit_pw="$AUDIT_SERVICE_DB_PASSWORD" <<'SQL'
CREATE DATABASE orderflow;
CREATE ROLE draft_api LOGIN PASSWORD :'draft_pw';
CREATE ROLE export_service LOGIN PASSWORD :'export_pw';
CREATE ROLE audit_owner LOGIN PASSWORD :'audit_owner_pw';
CREATE ROLE audit_service LOGIN PASSWORD :'audit_pw';
\connect orderflow
REVOKE ALL ON DATABASE orderflow FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
ALTER DATABASE orderflow SET search_path = draft, export, audit, public;
CREATE SCHEMA draft AUTHORIZATION draft_api;
CREATE SCHEMA export AUTHORIZATION export_service;
CREATE SCHEMA audit AUTHORIZATION audit_owner;
GRANT USAGE ON SCHEMA audit TO audit_service;
GRANT CONNECT, TEMPORARY ON DATABASE orderflow TO draft_api, export_service, audit_owner, audit_service;
ALTER ROLE draft_api IN DATABASE orderflow SET search_path = draft;
ALTER ROLE export_service IN DATABASE orderflow SET search_path = export;
ALTER ROLE audit_owner IN DATABASE orderflow SET search_path = audit;
ALTER ROLE audit_service IN DATABASE orderflow SET search_path = audit;
SQL
