# Sourced by build-images.sh and compose.sh: ENGINE (the container CLI as an array),
# ENGINE_KIND (docker|podman), BUILD_FLAGS. docker when it reaches an engine; else
# podman with this directory's containers.conf (runc, explicit ulimits).
if [ -z "${ORDERFLOW_ENGINE:-}" ]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        ORDERFLOW_ENGINE=docker
    elif command -v podman >/dev/null; then
        ORDERFLOW_ENGINE=podman
    else
        echo "no container engine: install docker, or podman (apt-get install podman runc debootstrap)" >&2
        exit 1
    fi
fi
ENGINE_KIND=$ORDERFLOW_ENGINE
if [ "$ENGINE_KIND" = podman ]; then
    export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/podman/containers.conf}"
    ENGINE=(podman)
    BUILD_FLAGS=(--layers --format docker --ulimit nofile=16384:16384 --ulimit nproc=4096:4096)
else
    ENGINE=(docker)
    BUILD_FLAGS=()
fi
