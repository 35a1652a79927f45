# The backend itself in a container, driving the host's Docker engine through its socket:
#   scripts/build-images.sh --backend
#   docker run -d -v /var/run/docker.sock:/var/run/docker.sock -v ide-backend-data:/data \
#       -p 127.0.0.1:8000:8000 -e IDE_API_TOKEN=... ide-backend/server:latest
FROM debian:bookworm-slim

# Extra CA certificates for hosts behind a TLS-intercepting proxy (build/ca is filled by the build script).
COPY build/ca/ /usr/local/share/ca-certificates/ide-extra/
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt

WORKDIR /app
# Dependencies first, from pyproject.toml alone (an empty package stands in), so a code change rebuilds in seconds.
COPY pyproject.toml README.md ./
RUN python3 -m venv /opt/ide-backend \
    && mkdir ide_backend && touch ide_backend/__init__.py \
    && /opt/ide-backend/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && rm -rf ide_backend build \
    && useradd --system --create-home ide
COPY ide_backend ./ide_backend
RUN /opt/ide-backend/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --force-reinstall . \
    && rm -rf build
COPY static ./static
# xterm.js and Monaco for the demo page (staged from node_modules by the build script).
COPY build/vendor/ ./vendor/

# IDE_IDE_UPSTREAM=container: code-server is reached at the workspace container's own address (this container's
# loopback is not the host's, where workspace ports are published).
ENV IDE_HOST=0.0.0.0 \
    IDE_PORT=8000 \
    IDE_DATA_DIR=/data \
    IDE_STATIC_DIR=/app/static \
    IDE_VENDOR_DIR=/app/vendor \
    IDE_IDE_UPSTREAM=container
VOLUME /data
EXPOSE 8000
# Root by default, since the Docker socket is root's; run with --user and --group-add <docker gid> to drop it.
CMD ["/opt/ide-backend/bin/ide-backend", "serve"]
