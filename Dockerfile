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
COPY pyproject.toml README.md ./
COPY ide_backend ./ide_backend
COPY static ./static
RUN python3 -m venv /opt/ide-backend \
    && /opt/ide-backend/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && useradd --system --create-home ide

ENV IDE_HOST=0.0.0.0 \
    IDE_PORT=8000 \
    IDE_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
# Root by default, since the Docker socket is root's; run with --user and --group-add <docker gid> to drop it.
CMD ["/opt/ide-backend/bin/ide-backend", "serve"]
