#!/usr/bin/env bash
# Build the images ide-backend needs: the Debian base (pulled, or made with debootstrap where no registry answers)
# and the workspace image. Each image is skipped when it is already built from the same inputs.
#
# Options (environment):
#   IDE_WORKSPACE_IMAGE   tag of the workspace image              (default ide-backend/workspace:latest)
#   IDE_EXTRA_CA_DIR      a folder of extra CA certificates (*.crt) to trust inside the images, for hosts behind a
#                         TLS-intercepting proxy; none by default
#   IDE_FORCE_REBUILD=1   rebuild even when the inputs did not change
# Arguments:
#   --backend             also build the backend's own image (ide-backend/server:latest) from the root Dockerfile
set -euo pipefail

DOCKER=/usr/bin/docker
BASE_IMAGE=debian:bookworm-slim
WORKSPACE_IMAGE=${IDE_WORKSPACE_IMAGE:-ide-backend/workspace:latest}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[build-images] %s\n' "$*" >&2; }

ensure_base() {
    if "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return
    fi
    log "pulling $BASE_IMAGE"
    if "$DOCKER" pull "$BASE_IMAGE" >/dev/null 2>&1; then
        return
    fi
    log "no registry answers: building $BASE_IMAGE with debootstrap"
    if ! command -v debootstrap >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    local dir
    dir=$(mktemp -d /tmp/ide-base.XXXXXX)
    debootstrap --variant=minbase bookworm "$dir" >/tmp/ide-debootstrap.log 2>&1 || {
        tail -n 20 /tmp/ide-debootstrap.log >&2
        exit 1
    }
    # Keep the image slim the way the official one is: no apt lists or caches.
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin
    tar -C "$dir" -c . | "$DOCKER" import - "$BASE_IMAGE" >/dev/null
    rm -rf "$dir"
}

# build_image TAG CONTEXT: builds CONTEXT's Dockerfile, skipped when the image carries the same input hash.
build_image() {
    local tag=$1 context=$2 ctx hash current
    ctx=$(mktemp -d /tmp/ide-ctx.XXXXXX)
    cp -a "$context"/. "$ctx"/
    mkdir -p "$ctx/ca"
    if [ -n "${IDE_EXTRA_CA_DIR:-}" ]; then
        find "$IDE_EXTRA_CA_DIR" -maxdepth 1 -name '*.crt' -exec cp {} "$ctx/ca/" \;
    fi
    hash=$(cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
    hash="$hash-$("$DOCKER" image inspect -f '{{.Id}}' "$BASE_IMAGE" | cut -c8-19)"
    current=$("$DOCKER" image inspect -f '{{index .Config.Labels "ide-backend.input-hash"}}' "$tag" 2>/dev/null || true)
    if [ "$current" = "$hash" ] && [ "${IDE_FORCE_REBUILD:-0}" != 1 ]; then
        log "$tag is up to date"
        rm -rf "$ctx"
        return
    fi
    log "building $tag"
    "$DOCKER" build -q --label "ide-backend.input-hash=$hash" -t "$tag" "$ctx" >/dev/null
    rm -rf "$ctx"
    log "built $tag"
}

build_backend() {
    mkdir -p "$ROOT/build/ca"
    rm -f "$ROOT"/build/ca/*.crt
    if [ -n "${IDE_EXTRA_CA_DIR:-}" ]; then
        find "$IDE_EXTRA_CA_DIR" -maxdepth 1 -name '*.crt' -exec cp {} "$ROOT/build/ca/" \;
    fi
    log "building ide-backend/server:latest"
    "$DOCKER" build -q -t ide-backend/server:latest "$ROOT" >/dev/null
    log "built ide-backend/server:latest"
}

ensure_base
build_image "$WORKSPACE_IMAGE" "$ROOT/images/workspace"
if [ "${1:-}" = "--backend" ]; then
    build_backend
fi
