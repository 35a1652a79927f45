#!/usr/bin/env bash
# A real Docker Swarm of N engines on this one machine, for the Swarm runtime's tests: each node is a container
# (ide-swarm-K, image images/swarm-node) running its own dockerd on a bridge network (ide-swarm), node 1 the manager.
# Every step is skipped when already done, so `up` on a running cluster takes a few seconds.
#
#   scripts/swarm.sh up [N]        N nodes (default 3), joined and Ready, the images loaded; prints the manager's URL
#   scripts/swarm.sh down          remove the nodes, their data volumes and the network
#   scripts/swarm.sh stop-node K   docker stop node K (K or ide-swarm-K): the machine goes down, its state stays
#   scripts/swarm.sh start-node K  start it again; waits until its engine answers and the manager sees it Ready
#   scripts/swarm.sh nodes         one line per node: NAME IP NODE_ID
#
# Options (environment):
#   IDE_SWARM_IMAGES   images loaded into every node (default the workspace and code-server images); each is skipped on a
#                      node that already has the same image id
#   IDE_EXTRA_CA_DIR, IDE_FORCE_REBUILD  as for scripts/build-images.sh (the node image is built the same way)
#
# The nodes' engines listen on plain TCP (tcp://IP:2375, no TLS) on the ide-swarm network only: the host reaches
# them there, and so do the other nodes; the swarm's own ports (2377, 7946, 4789) are used on the same addresses.
set -euo pipefail

# build_image TAG CONTEXT: scripts/build-images.sh's own function (skipped when the input hash label matches).
# Sourced first: what it sets (DOCKER, BASE_IMAGE, ROOT, log) is set again below, for this script.
# shellcheck source=scripts/build-images.sh
source "$(dirname "$0")/build-images.sh"

DOCKER=/usr/bin/docker
BASE_IMAGE=debian:bookworm-slim
NODE_IMAGE=ide-backend/swarm-node:latest
NETWORK=ide-swarm
LABEL=ide-backend.swarm-node
IMAGES=${IDE_SWARM_IMAGES:-ide-backend/workspace:latest ide-backend/code-server:latest}
if [ -z "${IDE_EXTRA_CA_DIR+set}" ] && compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    IDE_EXTRA_CA_DIR=/usr/local/share/ca-certificates
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
log() { printf '[swarm] %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}


name_of() { printf 'ide-swarm-%s' "$1"; }
# The node's fixed address: 10 + K in the network's subnet, so a restarted node keeps the address the swarm knows.
address_of() { printf '%s.%s' "$PREFIX" "$((10 + $1))"; }
engine() {
    local address=$1
    shift
    "$DOCKER" -H "tcp://$address:2375" "$@"
}
# The node numbers of the node containers there are, running or not.
node_numbers() { "$DOCKER" ps -a --filter "label=$LABEL" --format "{{.Label \"$LABEL\"}}" | sort -n; }
node_number() {
    local k=${1#ide-swarm-}
    [[ $k =~ ^[0-9]+$ ]] || die "not a node: $1 (give K or ide-swarm-K)"
    printf '%s' "$k"
}

# Bridge networks get no fixed addresses unless they have a configured subnet: take the one Docker picks (free of
# the other networks'), and make it configured.
ensure_network() {
    local subnet
    if ! "$DOCKER" network inspect "$NETWORK" >/dev/null 2>&1; then
        "$DOCKER" network create --label "$LABEL=network" "$NETWORK" >/dev/null
        subnet=$("$DOCKER" network inspect -f '{{(index .IPAM.Config 0).Subnet}}' "$NETWORK")
        "$DOCKER" network rm "$NETWORK" >/dev/null
        "$DOCKER" network create --label "$LABEL=network" --subnet "$subnet" "$NETWORK" >/dev/null
        log "created network $NETWORK ($subnet)"
    fi
    read_network
}

# Sets PREFIX, the first three numbers of the nodes' addresses.
read_network() {
    local subnet
    subnet=$("$DOCKER" network inspect -f '{{(index .IPAM.Config 0).Subnet}}' "$NETWORK" 2>/dev/null) ||
        die "no network $NETWORK: run scripts/swarm.sh up"
    [[ $subnet =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/(16|20|24)$ ]] || die "network $NETWORK has subnet $subnet: want a /16-/24"
    PREFIX=${BASH_REMATCH[1]}
}

ensure_node() {
    local k=$1 name state
    name=$(name_of "$k")
    state=$("$DOCKER" inspect -f '{{.State.Status}}' "$name" 2>/dev/null || true)
    if [ -n "$state" ] && [ "$("$DOCKER" inspect -f '{{.Image}}' "$name")" != "$(
        "$DOCKER" image inspect -f '{{.Id}}' "$NODE_IMAGE"
    )" ]; then
        # Its state is in its data volume: the new container is the same swarm node, with the same address.
        log "replacing node $name (its image changed)"
        "$DOCKER" stop "$name" >/dev/null
        "$DOCKER" rm "$name" >/dev/null
        state=""
    fi
    case $state in
        running) return ;;
        "")
            log "starting node $name at $(address_of "$k")"
            "$DOCKER" volume inspect "$name-data" >/dev/null 2>&1 ||
                "$DOCKER" volume create --label "$LABEL=$k" "$name-data" >/dev/null
            # Not --privileged (it fails here: no CAP_SYS_RESOURCE); these are what an engine inside needs.
            "$DOCKER" run -d --name "$name" --hostname "$name" --label "$LABEL=$k" \
                --network "$NETWORK" --ip "$(address_of "$k")" \
                --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined \
                --security-opt apparmor=unconfined --security-opt systempaths=unconfined \
                --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
                -v "$name-data:/var/lib/docker" --stop-timeout 30 \
                "$NODE_IMAGE" >/dev/null
            ;;
        *)
            log "starting node $name again (was $state)"
            "$DOCKER" start "$name" >/dev/null
            ;;
    esac
}

wait_engine() {
    local k=$1 i
    for i in $(seq 1 120); do
        engine "$(address_of "$k")" info >/dev/null 2>&1 && return
        sleep 0.5
    done
    "$DOCKER" logs --tail 20 "$(name_of "$k")" >&2 || true
    die "the engine of $(name_of "$k") did not answer within 60 s"
}

swarm_state() { engine "$(address_of "$1")" info -f '{{.Swarm.LocalNodeState}}'; }
node_id() { engine "$(address_of "$1")" info -f '{{.Swarm.NodeID}}'; }

ensure_swarm() {
    local n=$1 manager k token ids
    manager=$(address_of 1)
    if [ "$(swarm_state 1)" != active ]; then
        log "swarm init on $(name_of 1)"
        engine "$manager" swarm init --advertise-addr "$manager" >/dev/null
    fi
    ids=$(engine "$manager" node ls -q)
    for k in $(seq 2 "$n"); do
        if [ "$(swarm_state "$k")" = active ]; then
            # Still a member of this swarm (its state survives restarts), or of one that is gone: leave that one.
            grep -qx "$(node_id "$k")" <<<"$ids" && continue
            engine "$(address_of "$k")" swarm leave --force >/dev/null
        fi
        token=${token:-$(engine "$manager" swarm join-token -q worker)}
        log "joining $(name_of "$k") as a worker"
        engine "$(address_of "$k")" swarm join --token "$token" --advertise-addr "$(address_of "$k")" \
            "$manager:2377" >/dev/null
    done
}

# wait_ready K...: until the manager lists each of these nodes as Ready.
wait_ready() {
    local manager i k ready missing
    local -A ids=()
    manager=$(address_of 1)
    for k in "$@"; do
        ids[$k]=$(node_id "$k")
    done
    for i in $(seq 1 240); do
        ready=$(engine "$manager" node ls --format '{{.ID}} {{.Status}}' 2>/dev/null | awk '$2 == "Ready" {print $1}')
        missing=""
        for k in "$@"; do
            grep -qx "${ids[$k]}" <<<"$ready" || missing="$missing $(name_of "$k")"
        done
        [ -z "$missing" ] && return
        sleep 0.5
    done
    die "not Ready after 120 s:$missing"
}

# Each image into each node that lacks it (compared by id): saved once, loaded into the nodes in parallel.
load_images() {
    local n=$1 image id k targets file pids pid
    for image in $IMAGES; do
        id=$("$DOCKER" image inspect -f '{{.Id}}' "$image")
        targets=()
        for k in $(seq 1 "$n"); do
            [ "$(engine "$(address_of "$k")" image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)" = "$id" ] ||
                targets+=("$k")
        done
        [ ${#targets[@]} -eq 0 ] && continue
        log "loading $image into ${targets[*]/#/ide-swarm-}"
        file=$(mktemp /var/tmp/ide-swarm-image.XXXXXX)
        "$DOCKER" save -o "$file" "$image"
        pids=()
        for k in "${targets[@]}"; do
            engine "$(address_of "$k")" load -q -i "$file" >/dev/null &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do
            wait "$pid" || {
                rm -f "$file"
                die "loading $image into a node failed"
            }
        done
        rm -f "$file"
    done
}

cmd_up() {
    local n=${1:-3} k image
    [[ $n =~ ^[1-9][0-9]?$ ]] || die "up takes a node count (1-99), not $n"
    local missing=0
    for image in "$BASE_IMAGE" $IMAGES; do
        "$DOCKER" image inspect "$image" >/dev/null 2>&1 || missing=1
    done
    if [ "$missing" = 1 ]; then
        log "building the project's images first (scripts/build-images.sh)"
        IDE_TEMPLATE_IMAGES="" "$ROOT/scripts/build-images.sh"
    fi
    build_image "$NODE_IMAGE" "$ROOT/images/swarm-node"
    ensure_network
    for k in $(seq 1 "$n"); do
        ensure_node "$k"
    done
    for k in $(seq 1 "$n"); do
        wait_engine "$k"
    done
    ensure_swarm "$n"
    wait_ready $(seq 1 "$n")
    load_images "$n"
    printf 'tcp://%s:2375\n' "$(address_of 1)"
}

cmd_down() {
    local k ids
    ids=$("$DOCKER" ps -aq --filter "label=$LABEL")
    if [ -n "$ids" ]; then
        log "removing the nodes"
        # shellcheck disable=SC2086
        "$DOCKER" rm -f -v $ids >/dev/null
    fi
    for k in $("$DOCKER" volume ls -q | grep -E '^ide-swarm-[0-9]+-data$' || true); do
        "$DOCKER" volume rm "$k" >/dev/null
    done
    if "$DOCKER" network inspect "$NETWORK" >/dev/null 2>&1; then
        "$DOCKER" network rm "$NETWORK" >/dev/null
    fi
    # The cgroups of the nodes' containers, killed with their node: empty folders now (rmdir removes only those).
    find /sys/fs/cgroup/*/ide-swarm -depth -type d -exec rmdir {} + 2>/dev/null || true
    log "down"
}

cmd_stop_node() {
    local k
    k=$(node_number "${1:?stop-node K}")
    log "stopping $(name_of "$k")"
    "$DOCKER" stop "$(name_of "$k")" >/dev/null
}

cmd_start_node() {
    local k
    k=$(node_number "${1:?start-node K}")
    read_network
    log "starting $(name_of "$k")"
    "$DOCKER" start "$(name_of "$k")" >/dev/null
    wait_engine "$k"
    [ "$k" = 1 ] || wait_engine 1
    wait_ready "$k"
}

cmd_nodes() {
    local k id
    "$DOCKER" network inspect "$NETWORK" >/dev/null 2>&1 || return 0
    read_network
    for k in $(node_numbers); do
        id=$(node_id "$k" 2>/dev/null ||
            engine "$(address_of 1)" node ls --filter "name=$(name_of "$k")" -q 2>/dev/null | head -n 1 || true)
        printf '%s %s %s\n' "$(name_of "$k")" "$(address_of "$k")" "${id:--}"
    done
}

case ${1:-} in
    up) cmd_up "${@:2}" ;;
    down) cmd_down ;;
    stop-node) cmd_stop_node "${@:2}" ;;
    start-node) cmd_start_node "${@:2}" ;;
    nodes) cmd_nodes ;;
    *)
        log "usage: scripts/swarm.sh up [N] | down | stop-node K | start-node K | nodes"
        exit 2
        ;;
esac
