"""The tables, as SQLAlchemy Core objects; the DDL that creates them lives in store.migrations."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("workspace_id", sa.Text, primary_key=True),
    sa.Column("container_name", sa.Text, nullable=False),
    sa.Column("container_id", sa.Text, nullable=True),
    sa.Column("volume_name", sa.Text, nullable=False),
    sa.Column("image", sa.Text, nullable=False),
    sa.Column("password", sa.Text, nullable=False),
    sa.Column("theme", sa.Text, nullable=True),
    sa.Column("stop_reason", sa.Text, nullable=True),
    sa.Column("template", sa.Text, nullable=True),
    # ISO 8601 UTC text: the same on SQLite and PostgreSQL, and sorts correctly.
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
)

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Text, nullable=False),
)

project_webhooks = sa.Table(
    "project_webhooks",
    metadata,
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),  # signs the project's deliveries (HMAC key, kept as given)
    sa.Column("updated_at", sa.Text, nullable=False),
)

workspace_activity = sa.Table(
    "workspace_activity",
    metadata,
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("workspace_id", sa.Text, primary_key=True),
    sa.Column("process_id", sa.Text, primary_key=True),  # the backend process that saw it
    sa.Column("last_used_at", sa.Float, nullable=False),  # Unix time
    sa.Column("busy_until", sa.Float, nullable=False),  # Unix time: a lease some process renews while it holds it
)

backend_processes = sa.Table(
    "backend_processes",
    metadata,
    sa.Column("process_id", sa.Text, primary_key=True),
    sa.Column("instance", sa.Text, nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),  # Unix time
    sa.Column("seen_at", sa.Float, nullable=False),  # Unix time of its last heartbeat
)

token_revocations = sa.Table(
    "token_revocations",
    metadata,
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("workspace_id", sa.Text, primary_key=True),  # '' for the whole project
    sa.Column("revoked_at", sa.Float, nullable=False),  # Unix time
)

held_terminals = sa.Table(
    "held_terminals",
    metadata,
    sa.Column("process_id", sa.Text, primary_key=True),  # the client's id, global on one database
    sa.Column("project_id", sa.Text, nullable=False),
    sa.Column("workspace_id", sa.Text, nullable=False),
    sa.Column("hold_key", sa.Text, nullable=False),  # names its holder in the container (random hex)
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("started_at", sa.Text, nullable=False),  # ISO 8601 UTC
)
