#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine: install docker.io when root and missing, start dockerd when
# nothing answers. Safe to run again: every step is skipped when already done.
set -euo pipefail

DOCKER=/usr/bin/docker
log() { printf '[docker-engine] %s\n' "$*" >&2; }

if "$DOCKER" info >/dev/null 2>&1; then
    log "engine already answering"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || [ ! -x "$DOCKER" ]; then
    if [ "$(id -u)" != 0 ]; then
        log "Docker is not installed and this is not root: install docker.io (or Docker Engine) first"
        exit 1
    fi
    log "installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi

if [ "$(id -u)" != 0 ]; then
    log "no Docker engine answers and only root can start dockerd here"
    exit 1
fi

# A dockerd that is still shutting down (it stops its containers first) holds the pid file: let it finish.
for _ in $(seq 1 120); do
    pgrep -x dockerd >/dev/null || break
    sleep 0.5
done
if pgrep -x dockerd >/dev/null; then
    log "a dockerd process is running but not answering; stop it first"
    exit 1
fi
rm -f /var/run/docker.pid  # left by a dockerd that was killed: nothing runs now
log "starting dockerd"
mkdir -p /var/log
nohup dockerd >>/var/log/ide-backend-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
    if "$DOCKER" info >/dev/null 2>&1; then
        log "engine up"
        exit 0
    fi
    sleep 0.5
done
log "dockerd did not answer within 30 s; see /var/log/ide-backend-dockerd.log"
tail -n 20 /var/log/ide-backend-dockerd.log | cut -c1-500 >&2 || true
exit 1
