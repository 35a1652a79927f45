"""The async store over `databases`: the only module that runs SQL. Returns dataclasses, never rows."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import sqlalchemy as sa
from databases import Database

from ..errors import StoreInUse, StoreUnavailable
from ..metrics import db_call
from .migrations import CREATE_VERSION_TABLE, MIGRATIONS
from .tables import (
    backend_processes,
    held_terminals,
    project_webhooks,
    schema_migrations,
    token_revocations,
    workspace_activity,
    workspaces,
)

log = logging.getLogger(__name__)

# What the drivers raise when the database itself fails: locked, full, gone, refusing, or too slow to answer.
DATABASE_ERRORS = (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def _advisory_id(key: str) -> int:
    """The PostgreSQL advisory lock number of a name (64 bits of its hash)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class WorkspaceRecord:
    project_id: str
    workspace_id: str
    container_name: str
    container_id: str | None
    volume_name: str
    image: str
    password: str
    theme: str | None
    created_at: str
    updated_at: str
    stop_reason: str | None = None
    template: str | None = None  # None: made before templates (the default template's, on its own image)

    @classmethod
    def new(cls, **fields: Any) -> WorkspaceRecord:
        """A record not stored yet, stamped now."""
        now = _now()
        return cls(**fields, created_at=now, updated_at=now)

    @classmethod
    def _from_row(cls, row: Mapping[str, Any]) -> WorkspaceRecord:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ProjectWebhook:
    """A project's own receiver of lifecycle events (POST /api/v1/webhooks/set) and the key its deliveries are
    signed with."""

    project_id: str
    url: str
    secret: str
    updated_at: str


@dataclass(frozen=True)
class HeldTerminalRecord:
    """A terminal held in its workspace: the process id a client attaches with, and where it runs."""

    process_id: str
    project_id: str
    workspace_id: str
    hold_key: str
    command: str
    started_at: str


class Store:
    """Workspace records in SQLite (default) or PostgreSQL, chosen by URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.backend = urlsplit(url).scheme.split("+")[0]
        self._db = Database(url)
        self._file_lock: int | None = None  # SQLite: the descriptor holding <file>.lock while connected
        # SQLite only: workspace records as last read. This process is the file's only user (_lock_file) and every
        # change to a record goes through create/update/delete here, which drop it before and after they write; a
        # read that overlaps any write is not kept. PostgreSQL is shared with other processes: read every time.
        self._records: dict[tuple[str, str], WorkspaceRecord] = {}
        self._writes = 0

    @property
    def shared(self) -> bool:
        """Whether other backend processes may use this database at the same time (PostgreSQL)."""
        return self.backend == "postgresql"

    async def connect(self) -> None:
        if self.backend == "sqlite":
            path = self.url.split(":///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._lock_file(Path(path))
        try:
            with self._errors("connecting to the database"):
                await self._db.connect()
                await self.migrate()
        except BaseException:
            self._unlock_file()
            raise

    async def disconnect(self) -> None:
        await self._db.disconnect()
        self._unlock_file()

    def _lock_file(self, path: Path) -> None:
        """SQLite serves one backend process: a second one on the same file is refused, naming the holder and
        what to use instead. The lock is the kernel's (flock), so a killed process leaves none behind."""
        lock_path = path.with_name(path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreInUse(
                f"Another ide-backend process (pid {holder}) is using the SQLite database {path}. SQLite serves one "
                "process; to run several, point them all at one PostgreSQL database "
                "(IDE_DATABASE_URL=postgresql://user:password@host/db)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._file_lock = fd

    def _unlock_file(self) -> None:
        if self._file_lock is not None:
            os.close(self._file_lock)  # closing the descriptor releases the flock
            self._file_lock = None

    @contextlib.asynccontextmanager
    async def workspace_lock(self, key: str, timeout: float = 300.0) -> AsyncIterator[None]:
        """Hold `key` (a workspace) against every other process sharing this database while the block runs: a
        PostgreSQL session advisory lock on a connection kept for the block (the same task's queries use it too);
        a dead holder's lock goes with its session. Waiting is by polling pg_try_advisory_lock, so a waiter holds
        no connection. Nothing to do on SQLite, which serves one process (see _lock_file)."""
        if not self.shared:
            yield
            return
        lock_id = _advisory_id(key)
        deadline = time.monotonic() + timeout
        pause = 0.01
        while True:
            async with self._db.connection() as connection:
                with self._errors("taking a workspace's lock"):
                    got = await connection.fetch_val("SELECT pg_try_advisory_lock(:id)", {"id": lock_id})
                if got:
                    try:
                        yield
                    finally:
                        with contextlib.suppress(*DATABASE_ERRORS):  # a lost session has let go already
                            await connection.execute("SELECT pg_advisory_unlock(:id)", {"id": lock_id})
                    return
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"{key} stayed busy in another backend process for {timeout:.0f} s; retry later")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """The database's own failures (sqlite3, asyncpg, the network, the disk) become StoreUnavailable with what
        we were doing; anything else is a bug in our own code and goes on as it is (a 500 in the log, not a 503
        that tells the operator to look at the database). Each call is timed for the metrics, by what it does."""
        try:
            with db_call(doing):
                yield
        except StoreUnavailable:
            raise
        except DATABASE_ERRORS as exc:
            log.warning("database error while %s: %s", doing, exc)
            raise StoreUnavailable(
                f"The database failed while {doing}: {exc}. Check that it is reachable and writable, then retry."
            ) from exc

    async def migrate(self) -> int:
        """Apply pending migrations in order; returns the schema version now in force."""
        await self._db.execute(CREATE_VERSION_TABLE)
        applied = {row["version"] for row in await self._db.fetch_all(sa.select(schema_migrations.c.version))}
        for version, statements in MIGRATIONS:
            if version in applied:
                continue
            async with self._db.transaction():
                for statement in statements:
                    await self._db.execute(statement)
                await self._db.execute(schema_migrations.insert().values(version=version, applied_at=_now()))
            log.info("database schema migrated to version %d", version)
        return max([v for v, _ in MIGRATIONS] + [int(v) for v in applied])

    async def schema_version(self) -> int:
        with self._errors("reading the schema version"):
            value = await self._db.fetch_val(sa.select(sa.func.max(schema_migrations.c.version)))
        return int(value or 0)

    async def get(self, project_id: str, workspace_id: str) -> WorkspaceRecord | None:
        key = (project_id, workspace_id)
        if (known := self._records.get(key)) is not None:
            return known
        writes = self._writes
        query = workspaces.select().where(
            workspaces.c.project_id == project_id, workspaces.c.workspace_id == workspace_id
        )
        with self._errors("reading a workspace"):
            row = await self._db.fetch_one(query)
        record = WorkspaceRecord._from_row(row._mapping) if row else None
        if record is not None and not self.shared and writes == self._writes:
            self._records[key] = record
        return record

    @contextlib.contextmanager
    def _writing(self, project_id: str, workspace_id: str) -> Iterator[None]:
        """A write of a workspace's record: forget it before and after (see _records)."""
        self._writes += 1
        self._records.pop((project_id, workspace_id), None)
        try:
            yield
        finally:
            self._writes += 1
            self._records.pop((project_id, workspace_id), None)

    async def by_container_name(self, container_name: str) -> WorkspaceRecord | None:
        query = workspaces.select().where(workspaces.c.container_name == container_name)
        with self._errors("reading a workspace"):
            row = await self._db.fetch_one(query)
        return WorkspaceRecord._from_row(row._mapping) if row else None

    async def create(self, record: WorkspaceRecord) -> WorkspaceRecord:
        """Insert the record unless one exists; either way return the stored one (first writer wins)."""
        values = {name: getattr(record, name) for name in WorkspaceRecord.__dataclass_fields__}
        try:
            with self._writing(record.project_id, record.workspace_id), self._errors("saving a workspace"):
                await self._db.execute(workspaces.insert().values(**values))
        except StoreUnavailable:
            existing = await self.get(record.project_id, record.workspace_id)
            if existing is None:
                raise
            return existing
        return record

    async def update(self, project_id: str, workspace_id: str, **values: Any) -> None:
        query = (
            workspaces.update()
            .where(workspaces.c.project_id == project_id, workspaces.c.workspace_id == workspace_id)
            .values(**values, updated_at=_now())
        )
        with self._writing(project_id, workspace_id), self._errors("updating a workspace"):
            await self._db.execute(query)

    async def delete(self, project_id: str, workspace_id: str) -> bool:
        """Remove the record (and with it the stored password); False when there was none."""
        query = workspaces.delete().where(
            workspaces.c.project_id == project_id, workspaces.c.workspace_id == workspace_id
        )
        activity = workspace_activity.delete().where(
            workspace_activity.c.project_id == project_id, workspace_activity.c.workspace_id == workspace_id
        )
        with self._writing(project_id, workspace_id), self._errors("deleting a workspace"):
            existed = await self.get(project_id, workspace_id) is not None
            await self._db.execute(query)
            await self._db.execute(activity)
        return existed

    async def page(
        self, *, project_id: str | None, workspace_id: str | None, after: tuple[str, str] | None, limit: int
    ) -> list[WorkspaceRecord]:
        """Up to `limit` records in (project, workspace) order, after the key `after`: keyset paging, so a page
        stays right while workspaces come and go."""
        query = workspaces.select().order_by(workspaces.c.project_id, workspaces.c.workspace_id).limit(limit)
        if project_id is not None:
            query = query.where(workspaces.c.project_id == project_id)
        if workspace_id is not None:
            query = query.where(workspaces.c.workspace_id == workspace_id)
        if after is not None:
            query = query.where(sa.tuple_(workspaces.c.project_id, workspaces.c.workspace_id) > sa.tuple_(*after))
        with self._errors("listing workspaces"):
            rows = await self._db.fetch_all(query)
        return [WorkspaceRecord._from_row(row._mapping) for row in rows]

    async def all(self) -> list[WorkspaceRecord]:
        with self._errors("listing workspaces"):
            rows = await self._db.fetch_all(workspaces.select())
        return [WorkspaceRecord._from_row(row._mapping) for row in rows]

    async def revoke(self, project_id: str, workspace_id: str, at: float) -> None:
        """Record that tokens of the project ('' workspace) or workspace issued before `at` are void."""
        query = """
            INSERT INTO token_revocations (project_id, workspace_id, revoked_at) VALUES (:project, :workspace, :at)
            ON CONFLICT (project_id, workspace_id) DO UPDATE SET revoked_at = excluded.revoked_at
        """
        with self._errors("revoking tokens"):
            await self._db.execute(query, {"project": project_id, "workspace": workspace_id, "at": at})

    async def revocations(self) -> list[tuple[str, str, float]]:
        """Every revocation: (project, workspace or '', revoked before)."""
        with self._errors("reading token revocations"):
            rows = await self._db.fetch_all(token_revocations.select())
        return [(row["project_id"], row["workspace_id"], float(row["revoked_at"])) for row in rows]

    async def set_project_webhook(self, project_id: str, url: str, secret: str) -> ProjectWebhook:
        """Set (or replace) the project's webhook."""
        hook = ProjectWebhook(project_id, url, secret, _now())
        query = """
            INSERT INTO project_webhooks (project_id, url, secret, updated_at) VALUES (:project, :url, :secret, :at)
            ON CONFLICT (project_id) DO UPDATE SET url = excluded.url, secret = excluded.secret,
                updated_at = excluded.updated_at
        """
        with self._errors("setting a project's webhook"):
            await self._db.execute(query, {"project": project_id, "url": url, "secret": secret, "at": hook.updated_at})
        return hook

    async def remove_project_webhook(self, project_id: str) -> bool:
        """Remove the project's webhook; whether it had one."""
        # One statement: a read then a write in one SQLite transaction can deadlock with another writer (both
        # holding a shared lock, each waiting for the other), which SQLite answers at once with "locked".
        query = "DELETE FROM project_webhooks WHERE project_id = :project RETURNING project_id"
        with self._errors("removing a project's webhook"):
            row = await self._db.fetch_one(query, {"project": project_id})
        return row is not None

    async def project_webhook(self, project_id: str) -> ProjectWebhook | None:
        """The project's webhook, or None."""
        table = project_webhooks
        with self._errors("reading a project's webhook"):
            row = await self._db.fetch_one(table.select().where(table.c.project_id == project_id))
        if row is None:
            return None
        return ProjectWebhook(row["project_id"], row["url"], row["secret"], row["updated_at"])

    # -- several processes ------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Whether this process is the one doing `name` (a periodic job one process at a time should do) while the
        block runs: a PostgreSQL advisory lock tried once and held for the block. Always True on SQLite."""
        if not self.shared:
            yield True
            return
        lock_id = _advisory_id(f"job:{name}")
        async with self._db.connection() as connection:
            with self._errors(f"taking the {name} lock"):
                got = bool(await connection.fetch_val("SELECT pg_try_advisory_lock(:id)", {"id": lock_id}))
            try:
                yield got
            finally:
                if got:
                    with contextlib.suppress(*DATABASE_ERRORS):
                        await connection.execute("SELECT pg_advisory_unlock(:id)", {"id": lock_id})

    async def note_activity(self, process_id: str, rows: list[tuple[str, str, float, float]]) -> None:
        """Record (project, workspace, last used, busy until) as this process saw them; forget rows nobody renewed
        for a week (processes long gone)."""
        query = """
            INSERT INTO workspace_activity (project_id, workspace_id, process_id, last_used_at, busy_until)
            VALUES (:project, :workspace, :process, :used, :busy)
            ON CONFLICT (project_id, workspace_id, process_id) DO UPDATE SET
                last_used_at = excluded.last_used_at, busy_until = excluded.busy_until
        """
        values = [
            {"project": p, "workspace": w, "process": process_id, "used": used, "busy": busy}
            for p, w, used, busy in rows
        ]
        table = workspace_activity
        stale = table.delete().where(table.c.last_used_at < time.time() - 7 * 86400, table.c.busy_until < time.time())
        with self._errors("recording workspace activity"):
            if values:
                await self._db.execute_many(query, values)
            await self._db.execute(stale)

    async def activity(self, *, besides: str) -> dict[tuple[str, str], tuple[float, float]]:
        """(project, workspace) -> (last used, busy until) through any process but `besides`: the latest of each."""
        table = workspace_activity
        query = (
            sa.select(
                table.c.project_id,
                table.c.workspace_id,
                sa.func.max(table.c.last_used_at).label("used"),
                sa.func.max(table.c.busy_until).label("busy"),
            )
            .where(table.c.process_id != besides)
            .group_by(table.c.project_id, table.c.workspace_id)
        )
        with self._errors("reading workspace activity"):
            rows = await self._db.fetch_all(query)
        return {(row["project_id"], row["workspace_id"]): (float(row["used"]), float(row["busy"])) for row in rows}

    async def notify(self, channel: str, payload: str) -> None:
        """Send `payload` to every process listening on `channel` (PostgreSQL NOTIFY; at most 8000 bytes)."""
        with self._errors("notifying other processes"):
            await self._db.execute("SELECT pg_notify(:channel, :payload)", {"channel": channel, "payload": payload})

    @contextlib.asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[asyncio.Queue[str | None]]:
        """Notifications on `channel` (PostgreSQL LISTEN), on a connection of their own for the block: a queue of
        payloads, where None says the connection was lost (listen again; what was sent meanwhile is gone)."""
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        dsn = self.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        with self._errors("listening for other processes"):
            connection = await asyncpg.connect(dsn)
        try:
            connection.add_termination_listener(lambda _connection: queue.put_nowait(None))
            with self._errors("listening for other processes"):
                await connection.add_listener(channel, lambda _c, _pid, _channel, payload: queue.put_nowait(payload))
            yield queue
        finally:
            with contextlib.suppress(*DATABASE_ERRORS):
                await connection.close(timeout=2)

    async def heartbeat(self, process_id: str, instance: str, started_at: float) -> None:
        """Say this process is alive now (registering it the first time)."""
        query = """
            INSERT INTO backend_processes (process_id, instance, started_at, seen_at)
            VALUES (:process, :instance, :started, :now)
            ON CONFLICT (process_id) DO UPDATE SET seen_at = excluded.seen_at
        """
        values = {"process": process_id, "instance": instance, "started": started_at, "now": time.time()}
        with self._errors("recording that this process is alive"):
            await self._db.execute(query, values)

    async def live_processes(self, instance: str, within: float) -> set[str]:
        """The processes of the instance that said they were alive within the last `within` seconds; forgets the
        ones silent for a day."""
        table = backend_processes
        now = time.time()
        with self._errors("reading which processes are alive"):
            await self._db.execute(table.delete().where(table.c.seen_at < now - 86400))
            rows = await self._db.fetch_all(
                sa.select(table.c.process_id).where(table.c.instance == instance, table.c.seen_at >= now - within)
            )
        return {row["process_id"] for row in rows}

    async def process_gone(self, process_id: str) -> None:
        """This process stops (what it made may be taken over at once)."""
        with self._errors("recording that this process stops"):
            await self._db.execute(backend_processes.delete().where(backend_processes.c.process_id == process_id))

    # -- terminals held in their workspaces -------------------------------------------------------------------

    async def hold_terminal(self, record: HeldTerminalRecord) -> None:
        """Record a held terminal (replacing an ended one of the same id)."""
        query = """
            INSERT INTO held_terminals (process_id, project_id, workspace_id, hold_key, command, started_at)
            VALUES (:process, :project, :workspace, :key, :command, :started)
            ON CONFLICT (process_id) DO UPDATE SET project_id = excluded.project_id,
                workspace_id = excluded.workspace_id, hold_key = excluded.hold_key, command = excluded.command,
                started_at = excluded.started_at
        """
        values = {
            "process": record.process_id,
            "project": record.project_id,
            "workspace": record.workspace_id,
            "key": record.hold_key,
            "command": record.command,
            "started": record.started_at,
        }
        with self._errors("recording a terminal"):
            await self._db.execute(query, values)

    async def held_terminal(self, process_id: str) -> HeldTerminalRecord | None:
        table = held_terminals
        with self._errors("looking up a terminal"):
            row = await self._db.fetch_one(table.select().where(table.c.process_id == process_id))
        return None if row is None else _held(row._mapping)

    async def held_terminals(self, project_id: str, workspace_id: str) -> list[HeldTerminalRecord]:
        """The workspace's held terminals, oldest first."""
        table = held_terminals
        query = (
            table.select()
            .where(table.c.project_id == project_id, table.c.workspace_id == workspace_id)
            .order_by(table.c.started_at)
        )
        with self._errors("listing terminals"):
            rows = await self._db.fetch_all(query)
        return [_held(row._mapping) for row in rows]

    async def forget_terminal(self, process_id: str, started_at: str) -> None:
        """The terminal ended: forget it (unless its id was taken again since by a newer one)."""
        table = held_terminals
        with self._errors("forgetting a terminal"):
            await self._db.execute(
                table.delete().where(table.c.process_id == process_id, table.c.started_at == started_at)
            )


def _held(row: Mapping[str, Any]) -> HeldTerminalRecord:
    return HeldTerminalRecord(
        row["process_id"], row["project_id"], row["workspace_id"], row["hold_key"], row["command"], row["started_at"]
    )
