"""One Settings object, read from `IDE_*` environment variables (and CLI flags), built once and passed down."""

from __future__ import annotations

import os
import secrets
from ipaddress import IPv4Network
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_REPO = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "ide-backend"


class Settings(BaseSettings):
    """Everything a deployment can tune. Every field can be set as `IDE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="IDE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Field(default_factory=_default_data_dir)
    # Empty means a SQLite file `ide-backend.db` in data_dir; otherwise a `databases` URL
    # (sqlite:///path or postgresql://user:pass@host/db).
    database_url: str = ""
    # Empty means: generate one at start-up and print the URL that carries it.
    api_token: str = ""

    docker_host: str = ""  # empty: DOCKER_HOST or the local socket
    # Where workspaces run: one Docker engine, or the nodes of a Docker Swarm (docker_host is then a manager's
    # engine; each node's engine must answer on swarm_node_port at its swarm address: runtime/swarm.py).
    runtime: Literal["docker", "swarm"] = "docker"
    swarm_node_port: int = Field(default=2375, ge=1, le=65535)
    docker_timeout: float = Field(default=30.0, gt=0)  # seconds for one Docker API call (exec streams aside)
    instance: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")

    workspace_image: str = "ide-backend/workspace:latest"  # the built-in `base` template's image
    # Workspace templates: a TOML file (ide_backend/service/templates.py shows its shape); empty: the built-in set.
    templates: str = ""
    default_template: str = ""  # empty: the file's `default`, else `base`
    workspace_user: str = "coder"
    workspace_uid: int = 1000
    workspace_gid: int = 1000
    workspace_home: str = "/home/coder"
    workspace_dir: str = "/workspace"
    # Container ports published on 127.0.0.1 (random host ports); 8080 is where code-server listens.
    publish_ports: list[int] = Field(default_factory=lambda: [8080])

    # Where code-server listens in IDE images (must be one of publish_ports), and how long an IDE session lasts.
    code_server_port: int = 8080
    session_hours: float = Field(default=12.0, gt=0)
    # How the /ide/ proxy reaches code-server: its port published on the host's 127.0.0.1 ("published"), or the
    # workspace container's own address on its Docker network ("container", for a backend that runs in a container).
    ide_upstream: Literal["published", "container"] = "published"

    # Previews of the ports workspaces listen on (/preview/{projectId}/{workspaceId}/{port}/) are served on a second
    # port of their own, so a previewed app never shares the page's origin: 0 picks a free port at start-up, -1 turns
    # previews off. preview_url: where browsers reach that port (e.g. https://preview.example.com behind a reverse
    # proxy); empty: the host the browser used for the page, with preview_port.
    preview_port: int = Field(default=0, ge=-1, le=65535)
    preview_url: str = Field(default="", pattern=r"^(https?://[^/\s?#]+)?$")

    # Workspace networking (docs/security.md, "Network"): "isolated" (a network of their own where no workspace reaches
    # another or the host, outbound open), "none" (loopback only) or "shared" (Docker's default bridge, unrestricted).
    network: Literal["isolated", "none", "shared"] = "isolated"
    # With "isolated": the only IPv4 CIDRs workspaces may open connections to outside the host (DNS aside); empty: any.
    egress_allow: list[IPv4Network] = Field(default_factory=list)

    memory_limit_mb: int = Field(default=2048, ge=16)
    cpu_limit: float = Field(default=2.0, gt=0)
    pids_limit: int = Field(default=512, ge=16)
    # Per-workspace disk limit over everything the workspace user can write (/workspace, home, /tmp); 0: none.
    disk_limit_mb: int = Field(default=10240, ge=0)
    stop_timeout: int = Field(default=5, ge=0)  # seconds between SIGTERM and SIGKILL on stop
    # Started, unclaimed containers of workspace_image kept ready for new workspaces (docs/pool.md); 0 turns it off.
    pool_size: int = Field(default=2, ge=0, le=64)

    # A running workspace nobody uses for this many seconds is stopped (0: never); how often that is checked.
    idle_timeout: float = Field(default=1800.0, ge=0)
    idle_sweep: float = Field(default=15.0, gt=0)

    # Addresses of reverse proxies (comma-separated, or "*") whose X-Forwarded-For and X-Forwarded-Proto are
    # believed: the client's address then comes from there (per-address limits, logs). Empty: none, the peer is the
    # client.
    forwarded_allow_ips: str = ""

    # The server's log: "text" for people, "json" (one object per line, with the request id) for log collectors.
    log_format: Literal["text", "json"] = "text"

    # A token good for GET /metrics only (the operator's token works too); empty: the operator's token alone.
    metrics_token: str = ""

    # Lifecycle events POSTed as JSON to this URL (ide_backend/service/webhooks.py); empty: none. Signed with
    # webhook_secret (empty: the API token); an event not accepted within webhook_max_age seconds is dropped.
    webhook_url: str = Field(default="", pattern=r"^(https?://\S+)?$")
    webhook_secret: str = ""
    webhook_max_age: float = Field(default=3600.0, gt=0)

    # Run non-terminal commands through the image's ide-agent when it has one (falls back to Docker exec).
    exec_agent: bool = True
    exec_default_timeout: float = Field(default=300.0, gt=0)
    exec_max_timeout: float = Field(default=3600.0, gt=0)
    exec_output_cap: int = Field(default=10 * 1024 * 1024, ge=1024)  # bytes kept per stream
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # permessage-deflate on websockets (the API's and the /ide/ proxy's): less traffic for slow links, at a CPU cost
    # that halves the output stream's throughput on a local network.
    ws_compression: bool = False
    # Tests only (0, no pause, in production): seconds the container's writer (ide-write) pauses after each file it
    # stages and each one it moves into place, so a crash test can kill the backend or the container in the middle.
    writer_pause: float = Field(default=0.0, ge=0, le=5)

    # Signs scoped tokens and IDE session cookies; empty: generated once and kept in data_dir/token-secret.
    token_secret: str = ""
    token_max_ttl: int = Field(default=7 * 24 * 3600, ge=60)  # seconds a scoped token may live at most
    # How often each backend process reads the revocations (tokens/revoke) from the shared database.
    revocation_poll: float = Field(default=0.5, gt=0)

    # Failed token checks allowed per client address per minute before it gets 429 for the rest of the minute.
    auth_failure_limit: int = Field(default=30, ge=1)
    # Origins allowed to call the API from a browser page served elsewhere; empty (the default) means no CORS.
    cors_origins: list[str] = Field(default_factory=list)

    # The demo page (static/) and the front-end packages it loads (node_modules/, from scripts/frontend.sh).
    static_dir: Path = _REPO / "static"
    vendor_dir: Path = _REPO / "node_modules"

    # Websocket processes: replay buffer per process, how long one lives with nobody attached, how long a finished
    # one is kept for late attaches, and the most output one process may send.
    process_buffer_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Characters of output a websocket may fall behind on one process before it is detached (`slow_consumer`):
    # memory held per slow connection, against how long a busy client may pause while a large output streams.
    process_lag_chars: int = Field(default=128 * 1024 * 1024, ge=1024 * 1024)
    process_detached_ttl: float = Field(default=300.0, gt=0)
    process_finished_ttl: float = Field(default=300.0, gt=0)
    process_output_cap: int = Field(default=4 * 1024**3, ge=1024)

    # Live file watching (`watch` on the live channel): the most folders one workspace's watcher watches (the
    # kernel's fs.inotify.max_user_watches, shared by every workspace, may stop it sooner), how long a batch of
    # changes collects, and the most paths one batch carries before it becomes an `overflow` (re-list).
    watch_max_folders: int = Field(default=20000, ge=1)
    watch_batch_ms: int = Field(default=50, ge=1, le=5000)
    watch_max_batch: int = Field(default=1000, ge=1)

    @field_validator("workspace_dir", "workspace_home")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or value.rstrip("/") == "":
            raise ValueError("must be an absolute path below /")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _swarm_limits(self) -> Settings:
        """What the Swarm runtime does not do yet is refused at start-up, naming the setting (runtime/swarm.py)."""
        if self.runtime == "swarm":
            if "ide_upstream" not in self.model_fields_set:  # a node's published ports are not on this host
                self.ide_upstream = "container"
            wrong = [
                name
                for name, ok in (
                    ("IDE_NETWORK=shared", self.network == "shared"),
                    ("IDE_DISK_LIMIT_MB=0", self.disk_limit_mb == 0),
                    ("IDE_POOL_SIZE=0", self.pool_size == 0),
                    ("IDE_IDE_UPSTREAM=container", self.ide_upstream == "container"),
                )
                if not ok
            ]
            if wrong:
                raise ValueError(f"IDE_RUNTIME=swarm needs {', '.join(wrong)} (not available on a swarm yet)")
        return self

    def resolved_database_url(self) -> str:
        """The database URL in use: the configured one or the default SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'ide-backend.db'}"

    def ensure_token_secret(self) -> bytes:
        """The secret that signs scoped tokens: IDE_TOKEN_SECRET, else the one kept in the data folder (made on first
        use, readable by this user only), so tokens outlive a restart."""
        if self.token_secret:
            return self.token_secret.encode()
        path = self.data_dir / "token-secret"
        try:
            return path.read_bytes().strip()
        except FileNotFoundError:
            pass
        self.data_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(48).encode()
        draft = path.with_name(f".token-secret.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secret + b"\n")
        try:
            os.link(draft, path)  # whole or not at all, and the first process to get there wins
        except FileExistsError:
            secret = path.read_bytes().strip()
        finally:
            draft.unlink()
        return secret

    def ensure_token(self) -> tuple[str, bool]:
        """The API token, generating one when none is configured. Returns (token, generated)."""
        if self.api_token:
            return self.api_token, False
        self.api_token = secrets.token_urlsafe(24)
        return self.api_token, True
