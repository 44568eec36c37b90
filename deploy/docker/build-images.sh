#!/bin/bash
# `make images`: every OrderFlow image, built here from deploy/docker/*.Dockerfile.
#
# Engine: `docker` when it reaches an engine, else Debian's podman (as root, with
# deploy/docker/podman/containers.conf: runc, explicit ulimits). Base images:
# python:3.12-slim and debian:bookworm-slim by default; with ORDERFLOW_LOCAL_BASE=1
# (the default when the engine is podman, which has no registry here) a Debian
# bookworm base made with debootstrap and `podman import`, and a Python base on it
# (deploy/docker/base/python.Dockerfile). pip inside the builds never reaches an index:
# the wheels are downloaded or built on the host into deploy/docker/wheels first.
#
# Settings (environment): IMAGE_PREFIX (localhost/orderflow), IMAGE_TAG (dev),
# IMAGES (names to build, default all), BASE_IMAGE / DEBIAN_IMAGE (bases to pin).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
here=deploy/docker
# shellcheck source=engine.sh
source "$here/engine.sh"

PREFIX=${IMAGE_PREFIX:-localhost/orderflow}
TAG=${IMAGE_TAG:-dev}
ALL="draft-api export-service audit-service postgres redis kafka sftp gateway"
IMAGES=${IMAGES:-$ALL}
STAGE=${ORDERFLOW_IMAGE_STAGE:-$ROOT/.run-images}
mkdir -p "$STAGE"

if [ "${ORDERFLOW_LOCAL_BASE:-$([ "$ENGINE_KIND" = podman ] && echo 1 || echo 0)}" = 1 ]; then
    DEBIAN_IMAGE=${DEBIAN_IMAGE:-$PREFIX/bookworm-base:$TAG}
    BASE_IMAGE=${BASE_IMAGE:-$PREFIX/python-base:$TAG}
    if ! "${ENGINE[@]}" image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null || { echo "images: debootstrap missing (apt-get install debootstrap)"; exit 1; }
        rootfs="$STAGE/bookworm-rootfs"
        rm -rf "$rootfs"
        echo "images: debootstrap bookworm (minbase) -> $DEBIAN_IMAGE"
        debootstrap --variant=minbase bookworm "$rootfs" >"$STAGE/debootstrap.log" 2>&1 \
            || { tail -20 "$STAGE/debootstrap.log"; exit 1; }
        # as small as debian:bookworm-slim: no package caches, docs, man pages or
        # translations, now or from later apt-get installs
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
            "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
            "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/groff/* "$rootfs"/usr/share/lintian/*
        cp "$here/base/dpkg-slim.cfg" "$rootfs/etc/dpkg/dpkg.cfg.d/orderflow-slim"
        cp "$here/base/apt-slim.conf" "$rootfs/etc/apt/apt.conf.d/90orderflow-slim"
        tar -C "$rootfs" -c . | "${ENGINE[@]}" import - "$DEBIAN_IMAGE" >/dev/null
        rm -rf "$rootfs"
    fi
    if ! "${ENGINE[@]}" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        echo "images: $BASE_IMAGE (Debian's python3 on $DEBIAN_IMAGE)"
        "${ENGINE[@]}" build "${BUILD_FLAGS[@]}" -q -t "$BASE_IMAGE" \
            --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -f "$here/base/python.Dockerfile" "$here/base" >/dev/null
    fi
fi
DEBIAN_IMAGE=${DEBIAN_IMAGE:-debian:bookworm-slim}
BASE_IMAGE=${BASE_IMAGE:-python:3.12-slim}

needs_python=0
for name in $IMAGES; do
    case $name in draft-api|export-service|audit-service) needs_python=1 ;; esac
done
if [ $needs_python = 1 ]; then
    # the wheels for the base's Python: every locked dependency (binary wheels for
    # its version and Linux), the workspace members built from source
    pyver=$("${ENGINE[@]}" run --rm --entrypoint python3 "$BASE_IMAGE" \
        -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    wheels=$here/wheels
    find "$wheels" -maxdepth 1 \( -name '*.whl' -o -name '*.txt' \) -delete
    echo "images: wheels for Python $pyver -> $wheels"
    for svc in draft-api export-service audit-service; do
        uv export --frozen --no-dev --package "orderflow-$svc" --no-emit-workspace \
            --no-hashes --no-header --no-annotate -q -o "$wheels/$svc.txt"
    done
    python3 -m pip download -q --only-binary=:all: --python-version "$pyver" \
        --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$wheels" -r "$wheels/draft-api.txt" -r "$wheels/export-service.txt" \
        -r "$wheels/audit-service.txt"
    for member in shared services/draft-api services/export-service services/audit-service; do
        uv build -q --wheel --out-dir "$wheels" "$member"
    done
fi

build() {  # build <name> <dockerfile> <context> [build args...]
    local name=$1 file=$2 context=$3
    shift 3
    local start=$SECONDS
    "${ENGINE[@]}" build "${BUILD_FLAGS[@]}" -t "$PREFIX/$name:$TAG" -f "$file" "$@" "$context" \
        >"$STAGE/build-$name.log" 2>&1 || { tail -30 "$STAGE/build-$name.log"; echo "images: $name FAILED"; exit 1; }
    echo "images: $PREFIX/$name:$TAG built in $((SECONDS - start)) s"
}

for name in $IMAGES; do
    case $name in
        draft-api|export-service|audit-service)
            build "$name" "$here/$name.Dockerfile" . --build-arg "BASE_IMAGE=$BASE_IMAGE" ;;
        postgres|redis|sftp)
            build "$name" "$here/$name.Dockerfile" . --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" ;;
        gateway)
            build "$name" "$here/nginx.Dockerfile" . --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" ;;
        kafka)
            libs=$(.venv/bin/python -c 'from orderflow_devstack import install; print(install.kafka_libs_dir())')
            [ -f "$libs/kafka_2.13-4.0.0.jar" ] || { echo "images: Kafka jars missing in $libs (make install)"; exit 1; }
            ctx="$STAGE/kafka-context"
            rm -rf "$ctx" && mkdir -p "$ctx"
            cp -r "$libs" "$ctx/libs" && cp -r "$here/kafka/bin" "$ctx/bin"
            build kafka "$here/kafka.Dockerfile" "$ctx" --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" ;;
        *) echo "images: unknown image $name (one of: $ALL)"; exit 2 ;;
    esac
done

echo "images (base $BASE_IMAGE / $DEBIAN_IMAGE):"
for name in $IMAGES; do
    "${ENGINE[@]}" image inspect --format "{{.Size}}" "$PREFIX/$name:$TAG" \
        | awk -v n="$PREFIX/$name:$TAG" '{ printf "  %-42s %6.0f MB\n", n, $1 / 1000000 }'
done
