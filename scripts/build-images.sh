#!/usr/bin/env bash
# Build the images ide-backend needs: the Debian base (pulled, or made with debootstrap where no registry answers)
# and the workspace image. Each image is skipped when it is already built from the same inputs.
#
# Options (environment):
#   IDE_WORKSPACE_IMAGE   tag of the workspace image              (default ide-backend/workspace:latest)
#   IDE_CODE_SERVER_IMAGE tag of the code-server image            (default ide-backend/code-server:latest)
#   IDE_TEMPLATE_IMAGES   which template images to build besides the workspace image (default "python node";
#                         ide-backend/<name>:latest from images/<name>/, FROM the workspace image)
#   IDE_EXTRA_CA_DIR      a folder of extra CA certificates (*.crt) to trust inside the images, for hosts behind a
#                         TLS-intercepting proxy. Default: the host's own local CAs (/usr/local/share/ca-certificates)
#                         when it has any, so images trust what the host trusts; set it empty to trust none
#   IDE_FORCE_REBUILD=1   rebuild even when the inputs did not change
# Arguments (any order):
#   --backend             also build the backend's own image (ide-backend/server:latest) from the root Dockerfile
#   --code-server         also build the code-server image (VS Code in the browser) FROM the workspace image;
#                         run a workspace with it: IDE_WORKSPACE_IMAGE=ide-backend/code-server:latest
set -euo pipefail

DOCKER=/usr/bin/docker
BASE_IMAGE=debian:bookworm-slim
WORKSPACE_IMAGE=${IDE_WORKSPACE_IMAGE:-ide-backend/workspace:latest}
CODE_SERVER_IMAGE=${IDE_CODE_SERVER_IMAGE:-ide-backend/code-server:latest}
if [ -z "${IDE_EXTRA_CA_DIR+set}" ] && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    IDE_EXTRA_CA_DIR=/usr/local/share/ca-certificates
fi
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

# build_image TAG CONTEXT [FROM]: builds CONTEXT's Dockerfile (with --build-arg BASE_IMAGE=FROM when given), skipped
# when the image carries the same input hash: the context's files, the extra CAs and the base image's id.
build_image() {
    local tag=$1 context=$2 from=${3:-$BASE_IMAGE} ctx hash current
    local args=()
    if [ "$from" != "$BASE_IMAGE" ]; then
        args=(--build-arg "BASE_IMAGE=$from")
    fi
    ctx=$(mktemp -d /tmp/ide-ctx.XXXXXX)
    cp -a "$context"/. "$ctx"/
    mkdir -p "$ctx/ca"
    if [ -n "${IDE_EXTRA_CA_DIR:-}" ]; then
        find "$IDE_EXTRA_CA_DIR" -maxdepth 1 -name '*.crt' -exec cp {} "$ctx/ca/" \;
    fi
    hash=$(cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
    hash="$hash-$("$DOCKER" image inspect -f '{{.Id}}' "$from" | cut -c8-19)"
    current=$("$DOCKER" image inspect -f '{{index .Config.Labels "ide-backend.input-hash"}}' "$tag" 2>/dev/null || true)
    if [ "$current" = "$hash" ] && [ "${IDE_FORCE_REBUILD:-0}" != 1 ]; then
        log "$tag is up to date"
        rm -rf "$ctx"
        return
    fi
    log "building $tag"
    if ! "$DOCKER" build -q "${args[@]}" --label "ide-backend.input-hash=$hash" -t "$tag" "$ctx" >/dev/null; then
        rm -rf "$ctx"
        log "building $tag failed; if the error above is about TLS certificates, this host is behind a" \
            "TLS-intercepting proxy: set IDE_EXTRA_CA_DIR to a folder with its CA certificates (*.crt)"
        exit 1
    fi
    rm -rf "$ctx"
    # Multi-stage builds leave their build stages behind as untagged images; ours carry this label.
    "$DOCKER" image prune -f --filter label=ide-backend.stage=build >/dev/null
    log "built $tag"
}

# The root Dockerfile builds without these too (build/ca/ is kept empty in a clone; without build/vendor/ it installs
# the front-end packages itself): staging them reuses the host's CAs and node_modules.
build_backend() {
    mkdir -p "$ROOT/build/ca"
    rm -f "$ROOT"/build/ca/*.crt
    if [ -n "${IDE_EXTRA_CA_DIR:-}" ]; then
        find "$IDE_EXTRA_CA_DIR" -maxdepth 1 -name '*.crt' -exec cp {} "$ROOT/build/ca/" \;
    fi
    # The demo page's front-end packages (scripts/frontend.sh), only the files the page loads.
    [ -d "$ROOT/node_modules/monaco-editor/min" ] && [ -d "$ROOT/node_modules/swagger-ui-dist" ] ||
        bash "$ROOT/scripts/frontend.sh"
    rm -rf "$ROOT/build/vendor"
    mkdir -p "$ROOT/build/vendor/monaco-editor" "$ROOT/build/vendor/swagger-ui-dist"
    cp -r "$ROOT/node_modules/@xterm" "$ROOT/build/vendor/"
    cp -r "$ROOT/node_modules/monaco-editor/min" "$ROOT/build/vendor/monaco-editor/"
    cp "$ROOT/node_modules/swagger-ui-dist/swagger-ui-bundle.js" "$ROOT/node_modules/swagger-ui-dist/swagger-ui.css" \
        "$ROOT/build/vendor/swagger-ui-dist/"
    log "building ide-backend/server:latest"
    "$DOCKER" build -q -t ide-backend/server:latest "$ROOT" >/dev/null
    "$DOCKER" image prune -f --filter label=ide-backend.stage=build >/dev/null  # its frontend stage, as above
    log "built ide-backend/server:latest"
}

main() {
    local backend=0 code_server=0
    for arg in "$@"; do
        case $arg in
            --backend) backend=1 ;;
            --code-server) code_server=1 ;;
            *)
                log "unknown argument: $arg (known: --backend, --code-server)"
                exit 2
                ;;
        esac
    done
    if [ "$code_server" = 1 ] && [ "$WORKSPACE_IMAGE" = "$CODE_SERVER_IMAGE" ]; then
        # IDE_WORKSPACE_IMAGE names the image the server runs; here the plain workspace image is the base.
        WORKSPACE_IMAGE=ide-backend/workspace:latest
    fi

    ensure_base
    build_image "$WORKSPACE_IMAGE" "$ROOT/images/workspace"
    for template in ${IDE_TEMPLATE_IMAGES-python node}; do
        build_image "ide-backend/$template:latest" "$ROOT/images/$template" "$WORKSPACE_IMAGE"
    done
    if [ "$code_server" = 1 ]; then
        build_image "$CODE_SERVER_IMAGE" "$ROOT/images/code-server" "$WORKSPACE_IMAGE"
    fi
    if [ "$backend" = 1 ]; then
        build_backend
    fi
}

# Sourced (scripts/swarm.sh builds its node image with build_image), only the functions are defined.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
