#!/bin/bash
# `make compose-up` / `make compose-down` / `make compose-ps`: docker-compose.yml with
# `docker compose` where a Docker engine answers, else podman-compose (PyPI, run with
# uvx) on podman. Images: the ones `make images` built (IMAGE_PREFIX/IMAGE_TAG).
#   compose.sh up      secrets (.env), every container, wait until healthy, seed
#                      (KAFKA_BROKERS=3: with the kafka-cluster profile's two more brokers)
#   compose.sh down    stop and remove the containers (CLEAN=1: and volumes, .env)
#   compose.sh ps | logs [service] | seed | health
# Podman here runs without systemd, so it never runs HEALTHCHECKs by itself: `up`
# runs them while it waits, and starts a small ticker (`compose.sh health`, pid in
# .run-compose/health.pid) that runs them every 15 s afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
here=deploy/docker
# shellcheck source=engine.sh
source "$here/engine.sh"
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-orderflow}
STATE=${ORDERFLOW_COMPOSE_STATE:-$ROOT/.run-compose}
export ORDERFLOW_COMPOSE_STATE=$STATE
mkdir -p "$STATE"
PREFIX=${IMAGE_PREFIX:-localhost/orderflow}
TAG=${IMAGE_TAG:-dev}
for pair in DRAFT_API:draft-api EXPORT_SERVICE:export-service AUDIT_SERVICE:audit-service \
    POSTGRES:postgres REDIS:redis KAFKA:kafka SFTP:sftp GATEWAY:gateway; do
    var="${pair%%:*}_IMAGE"
    export "$var=${!var:-$PREFIX/${pair#*:}:$TAG}"
done
export EXPORT_WORKERS=${EXPORT_WORKERS:-2}
# KAFKA_BROKERS=3: the kafka-cluster profile (kafka-2, kafka-3), every client told all
# three, the topics made with replication 3 (the brokers' min.insync.replicas is 2)
export KAFKA_BROKERS=${KAFKA_BROKERS:-1}
PROFILE_ARGS=()
if [ "$KAFKA_BROKERS" = 3 ]; then
    export COMPOSE_PROFILES=kafka-cluster
    export KAFKA_BOOTSTRAP_SERVERS=kafka:9092,kafka-2:9092,kafka-3:9092
    export KAFKA_REPLICATION_FACTOR=3
    PROFILE_ARGS=(--profile kafka-cluster)
elif [ "$KAFKA_BROKERS" != 1 ]; then
    echo "compose: KAFKA_BROKERS=$KAFKA_BROKERS: 1 or 3"; exit 2
fi

if [ "$ENGINE_KIND" = docker ]; then
    COMPOSE=(docker compose)
else
    if command -v podman-compose >/dev/null; then
        COMPOSE=(podman-compose)
    else
        COMPOSE=(uvx --quiet podman-compose)
    fi
    COMPOSE+=(--in-pod false)
fi

project_containers() {
    "${ENGINE[@]}" ps -a --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
        --format '{{.Names}}'
}

health_ticker() {
    while true; do
        for name in $("${ENGINE[@]}" ps --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --format '{{.Names}}'); do
            "${ENGINE[@]}" healthcheck run "$name" >/dev/null 2>&1 || true
        done
        sleep "${ORDERFLOW_HEALTH_INTERVAL:-15}"
    done
}

start_ticker() {
    [ "$ENGINE_KIND" = podman ] || return 0
    if [ -f "$STATE/health.pid" ] && kill -0 "$(cat "$STATE/health.pid")" 2>/dev/null; then
        return 0
    fi
    nohup "$0" health >"$STATE/health.log" 2>&1 &
    echo $! > "$STATE/health.pid"
}

stop_ticker() {
    if [ -f "$STATE/health.pid" ]; then
        kill "$(cat "$STATE/health.pid")" 2>/dev/null || true
        rm -f "$STATE/health.pid"
    fi
}

wait_healthy() {  # [service...]: their containers (default all) healthy or done, or fail
    local deadline=$((SECONDS + ${ORDERFLOW_COMPOSE_TIMEOUT:-600})) pending only=" $* "
    while true; do
        pending=$("${ENGINE[@]}" ps -a --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
            --format '{{index .Labels "com.docker.compose.service"}} {{.Names}} {{.Status}}' \
            | awk -v only="$only" 'only == "  " || index(only, " " $1 " ") { $1 = ""; print substr($0, 2) }' \
            | grep -v -e '(healthy)' -e 'Exited (0)' || true)
        if echo "$pending" | grep -q -e 'Exited ([1-9]' -e '(unhealthy)'; then
            echo "compose: failed:"; echo "$pending" | grep -e 'Exited ([1-9]' -e '(unhealthy)'
            return 1
        fi
        [ -z "$pending" ] && return 0
        if [ $SECONDS -ge $deadline ]; then
            echo "compose: not healthy in time:"; echo "$pending"; return 1
        fi
        sleep 2
        if [ "$ENGINE_KIND" = podman ]; then  # ask the ones still starting now
            for name in $(echo "$pending" | awk '/starting/ && /^[^ ]+ Up/ { print $1 }'); do
                "${ENGINE[@]}" healthcheck run "$name" >/dev/null 2>&1 || true
            done
        fi
    done
}

case "${1:-}" in
    up)
        bash deploy/kafka/compose-env.sh
        start_ticker
        started=$SECONDS
        if [ "$ENGINE_KIND" = docker ]; then
            "${COMPOSE[@]}" "${PROFILE_ARGS[@]}" up -d --wait >"$STATE/up.log" 2>&1 \
                || { tail -40 "$STATE/up.log"; exit 1; }
        else
            # podman-compose on podman < 4.6 ignores the depends_on conditions (and its
            # --requires links trip podman 4.3), so: phase by phase in dependency order
            # (orderflow_devstack.compose phases), each healthy or done before the next
            : >"$STATE/up.log"
            mapfile -t phases < <(.venv/bin/python -m orderflow_devstack.compose phases)
            [ ${#phases[@]} -gt 0 ] || { echo "compose: no services in docker-compose.yml?"; exit 1; }
            for phase in "${phases[@]}"; do
                echo "compose: starting $phase"
                # shellcheck disable=SC2086
                "${COMPOSE[@]}" "${PROFILE_ARGS[@]}" up -d --no-deps $phase >>"$STATE/up.log" 2>&1 </dev/null \
                    || { tail -40 "$STATE/up.log"; exit 1; }
                # shellcheck disable=SC2086
                wait_healthy $phase
            done
        fi
        wait_healthy
        echo "compose: $(project_containers | wc -l) containers up and healthy in $((SECONDS - started)) s"
        .venv/bin/python -m orderflow_devstack.compose seed
        ;;
    down)
        # the compose file needs its secrets even to be read: a stack without .env
        # (never up, or cleaned) gets throwaway ones, removed again with CLEAN=1
        [ -f "${ORDERFLOW_COMPOSE_ENV:-.env}" ] || bash deploy/kafka/compose-env.sh >/dev/null
        # every profile's containers too, whatever KAFKA_BROKERS is now
        "${COMPOSE[@]}" --profile kafka-cluster down ${CLEAN:+-v} >"$STATE/down.log" 2>&1 \
            || { tail -40 "$STATE/down.log"; exit 1; }
        stop_ticker
        if [ -n "${CLEAN:-}" ]; then rm -rf .env "$STATE"; fi
        echo "compose: down${CLEAN:+ (volumes and secrets removed)}"
        ;;
    ps) "${ENGINE[@]}" ps -a --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
        --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}' ;;
    logs) shift; "${COMPOSE[@]}" logs "$@" ;;
    seed) .venv/bin/python -m orderflow_devstack.compose seed ;;
    health) health_ticker ;;
    *) echo "usage: $0 up|down|ps|logs [service]|seed"; exit 2 ;;
esac
