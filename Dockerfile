# The backend itself in a container, driving the host's Docker engine through its socket:
#   scripts/build-images.sh --backend
#   docker run -d -v /var/run/docker.sock:/var/run/docker.sock -v ide-backend-data:/data \
#       -p 127.0.0.1:8000:8000 -e IDE_API_TOKEN=... ide-backend/server:latest
# A plain `docker build .` of a fresh clone works too: nothing the build script stages is required.
# Extra CA certificates for hosts behind a TLS-intercepting proxy: the *.crt files in build/ca/ (there but empty in a
# clone; the build script copies the host's local CAs in, or put yours there by hand), trusted by apt, pip and npm.

# The demo page's front-end packages (xterm.js, Monaco) and /docs's (Swagger UI): those staged in build/vendor/ by
# the build script from node_modules, or else installed here from package-lock.json with Debian's npm, so the image
# has them either way.
FROM debian:bookworm-slim AS frontend
LABEL ide-backend.stage=build
WORKDIR /src
COPY package.json package-lock.json ./
COPY build/ ./build/
RUN set -e; \
    if [ -d build/vendor/monaco-editor/min ] && [ -d build/vendor/@xterm ] && [ -d build/vendor/swagger-ui-dist ]; then \
        mv build/vendor vendor; exit 0; \
    fi; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates nodejs npm >/dev/null; \
    find build/ca -maxdepth 1 -name '*.crt' -exec cp {} /usr/local/share/ca-certificates/ \; ; \
    update-ca-certificates >/dev/null; \
    if ! NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
            npm ci --no-audit --no-fund --loglevel=error --cache /tmp/npm-cache; then \
        echo "ide-backend: npm could not install the front-end packages. Behind a TLS-intercepting proxy, put its CA" \
            "certificates (*.crt) in build/ca/ (scripts/build-images.sh --backend puts this host's there)." >&2; \
        exit 1; \
    fi; \
    mkdir -p vendor/monaco-editor vendor/swagger-ui-dist; \
    cp -r node_modules/@xterm vendor/; \
    cp -r node_modules/monaco-editor/min vendor/monaco-editor/; \
    cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css vendor/swagger-ui-dist/

FROM debian:bookworm-slim
# build/ca/*.crt (see above) with Debian's CAs, also for pip (PIP_CERT) in the image.
COPY build/ca/ /usr/local/share/ca-certificates/ide-extra/
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv \
    && update-ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt

WORKDIR /app
# Dependencies first, from pyproject.toml alone (an empty package and README stand in), so a code or README change
# rebuilds in seconds.
COPY pyproject.toml ./
RUN python3 -m venv /opt/ide-backend \
    && mkdir ide_backend && touch ide_backend/__init__.py README.md \
    && { /opt/ide-backend/bin/pip install --no-cache-dir --disable-pip-version-check . || { \
        echo "ide-backend: pip could not install the Python packages. Behind a TLS-intercepting proxy, put its CA" \
            "certificates (*.crt) in build/ca/ (scripts/build-images.sh --backend puts this host's there)." >&2; \
        exit 1; }; } \
    && rm -rf ide_backend build README.md \
    && useradd --system --create-home ide
COPY README.md ./
COPY ide_backend ./ide_backend
RUN /opt/ide-backend/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --force-reinstall . \
    && rm -rf build
COPY static ./static
# xterm.js and Monaco for the demo page, Swagger UI for /docs (from the frontend stage above).
COPY --from=frontend /src/vendor/ ./vendor/

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
