"""Versioned schema: each migration is applied once, in order, and recorded in schema_migrations.

Add a migration by appending to MIGRATIONS; never edit one that has shipped. The SQL is plain and portable
(SQLite and PostgreSQL both run it as written).
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """
            CREATE TABLE workspaces (
                project_id TEXT NOT NULL,
                workspace_id TEXT NOT NULL,
                container_name TEXT NOT NULL,
                container_id TEXT,
                volume_name TEXT NOT NULL,
                image TEXT NOT NULL,
                password TEXT NOT NULL,
                theme TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                PRIMARY KEY (project_id, workspace_id)
            )
            """,
        ],
    ),
    # Engine events of containers claimed from the warm pool are mapped to their workspace by container name.
    (2, ["CREATE INDEX workspaces_container_name ON workspaces (container_name)"]),
    # POST /api/v1/tokens/revoke: tokens of a project ('' workspace) or a workspace issued before revoked_at are void.
    (
        3,
        [
            """
            CREATE TABLE token_revocations (
                project_id TEXT NOT NULL,
                workspace_id TEXT NOT NULL,
                revoked_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (project_id, workspace_id)
            )
            """,
        ],
    ),
    # Why the workspace's container last stopped or went away (requested, idle, died, oom_killed, ...).
    (4, ["ALTER TABLE workspaces ADD COLUMN stop_reason TEXT"]),
    # The template the workspace was made from (its image, limits and pool).
    (5, ["ALTER TABLE workspaces ADD COLUMN template TEXT"]),
    # POST /api/v1/webhooks/set: a project's own receiver of its workspaces' lifecycle events, and its signing secret.
    (
        6,
        [
            """
            CREATE TABLE project_webhooks (
                project_id TEXT PRIMARY KEY,
                url TEXT NOT NULL,
                secret TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )
            """,
        ],
    ),
    # Several processes on one database: when each workspace was last used through each of them, and until when
    # one of them holds it in use (a lease it renews while a terminal or VS Code session is open there).
    (
        7,
        [
            """
            CREATE TABLE workspace_activity (
                project_id TEXT NOT NULL,
                workspace_id TEXT NOT NULL,
                process_id TEXT NOT NULL,
                last_used_at DOUBLE PRECISION NOT NULL,
                busy_until DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (project_id, workspace_id, process_id)
            )
            """,
        ],
    ),
    # The backend processes of each instance, with when each last said it is alive (a heartbeat): what a process made
    # (warm pool containers) is another's to remove only once its maker is gone.
    (
        8,
        [
            """
            CREATE TABLE backend_processes (
                process_id TEXT PRIMARY KEY,
                instance TEXT NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                seen_at DOUBLE PRECISION NOT NULL
            )
            """,
        ],
    ),
    # Terminals held in their workspace (they outlive the backend that started them): which workspace each process
    # id is in, so any backend can attach to it.
    (
        9,
        [
            """
            CREATE TABLE held_terminals (
                process_id TEXT PRIMARY KEY,
                project_id TEXT NOT NULL,
                workspace_id TEXT NOT NULL,
                hold_key TEXT NOT NULL,
                command TEXT NOT NULL,
                started_at TEXT NOT NULL
            )
            """,
            "CREATE INDEX held_terminals_workspace ON held_terminals (project_id, workspace_id)",
        ],
    ),
]

CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
)
"""

LATEST = MIGRATIONS[-1][0]
