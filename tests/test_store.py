"""The store on a real SQLite file and a real PostgreSQL server: migrations, records, first-writer-wins."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ide_backend.errors import StoreUnavailable
from ide_backend.store import Store, WorkspaceRecord
from ide_backend.store.migrations import LATEST, MIGRATIONS

PG_URL = os.environ.get("IDE_TEST_POSTGRES_URL", "")
# The workspaces table as the first release made it (later migrations add columns).
V1_COLUMNS = [
    "project_id",
    "workspace_id",
    "container_name",
    "container_id",
    "volume_name",
    "image",
    "password",
    "theme",
    "created_at",
    "updated_at",
]


def _record(project: str, workspace: str, password: str = "pw") -> WorkspaceRecord:
    return WorkspaceRecord.new(
        project_id=project,
        workspace_id=workspace,
        container_name=f"c-{project}-{workspace}",
        container_id=None,
        volume_name=f"v-{project}-{workspace}",
        image="img",
        password=password,
        theme=None,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nested' / 'store.db'}"
        return
    if not PG_URL:
        pytest.skip("IDE_TEST_POSTGRES_URL is not set (scripts/test.sh sets it up when run as root)")
    yield PG_URL


def test_records_round_trip(url: str) -> None:
    async def scenario() -> None:
        store = Store(url)
        await store.connect()
        try:
            project = "p" + uuid.uuid4().hex[:8]
            assert await store.get(project, "w") is None
            saved = await store.create(_record(project, "w", password="first"))
            again = await store.create(_record(project, "w", password="second"))
            assert again.password == "first" == saved.password
            await store.update(project, "w", theme="Dark", container_id="abc")
            got = await store.get(project, "w")
            assert got is not None and got.theme == "Dark" and got.container_id == "abc"
            assert got.updated_at >= got.created_at
            assert any(r.project_id == project for r in await store.all())
            assert await store.schema_version() == LATEST
        finally:
            await store.disconnect()

    asyncio.run(scenario())


def test_project_webhooks_set_replace_read_and_remove(url: str) -> None:
    async def scenario() -> None:
        store = Store(url)
        await store.connect()
        try:
            project = "p" + uuid.uuid4().hex[:8]
            assert await store.project_webhook(project) is None
            await store.set_project_webhook(project, "http://127.0.0.1:9/a", "secret-one-0123456789")
            await store.set_project_webhook(project, "http://127.0.0.1:9/b", "secret-two-0123456789")
            hook = await store.project_webhook(project)
            assert hook is not None and (hook.url, hook.secret) == ("http://127.0.0.1:9/b", "secret-two-0123456789")
            assert await store.remove_project_webhook(project) is True
            assert await store.remove_project_webhook(project) is False
            assert await store.project_webhook(project) is None
        finally:
            await store.disconnect()

    asyncio.run(scenario())


def test_activity_is_kept_per_process_and_read_without_ones_own(url: str) -> None:
    async def scenario() -> None:
        store = Store(url)
        await store.connect()
        try:
            project = "p" + uuid.uuid4().hex[:8]
            now = time.time()
            await store.note_activity("one", [(project, "w", now - 100, 0.0)])
            await store.note_activity("two", [(project, "w", now - 90, now + 60)])
            await store.note_activity("one", [(project, "w", now - 80, 0.0)])  # replaces its own earlier row
            assert (await store.activity(besides="three"))[(project, "w")] == (now - 80, now + 60)
            assert (await store.activity(besides="one"))[(project, "w")] == (now - 90, now + 60)
            assert (await store.activity(besides="two"))[(project, "w")] == (now - 80, 0.0)
            await store.note_activity("old", [(project, "gone", now - 8 * 86400, 0.0)])
            assert (project, "gone") not in await store.activity(besides="three")  # a week unrenewed: forgotten
            await store.delete(project, "w")
            assert (project, "w") not in await store.activity(besides="three")
            async with store.exclusive("job") as first:
                assert first is True
                if store.shared:  # another session cannot have it meanwhile
                    other = Store(url)
                    await other.connect()
                    try:
                        async with other.exclusive("job") as second:
                            assert second is False
                    finally:
                        await other.disconnect()
        finally:
            await store.disconnect()

    asyncio.run(scenario())


def test_migrations_run_once_and_data_survives_reopen(url: str) -> None:
    project = "p" + uuid.uuid4().hex[:8]

    async def first() -> None:
        store = Store(url)
        await store.connect()
        await store.create(_record(project, "w"))
        await store.disconnect()

    async def second() -> None:
        store = Store(url)
        await store.connect()
        assert await store.migrate() == LATEST
        assert (await store.get(project, "w")) is not None
        await store.disconnect()

    asyncio.run(first())
    asyncio.run(second())


def test_sqlite_file_is_a_real_database(tmp_path: Path) -> None:
    path = tmp_path / "real.db"

    async def scenario() -> None:
        store = Store(f"sqlite:///{path}")
        await store.connect()
        await store.create(_record("p", "w"))
        await store.disconnect()

    asyncio.run(scenario())
    with sqlite3.connect(path) as conn:
        assert conn.execute("select project_id, workspace_id from workspaces").fetchall() == [("p", "w")]
        assert conn.execute("select version from schema_migrations").fetchall() == [(v,) for v, _ in MIGRATIONS]


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file made by the first release (schema 1, with a record in it) gets the container-name index, keeps its
    record, and finds it by container name."""
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
        for statement in MIGRATIONS[0][1]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (1, '2026-11-28T00:00:00+00:00')")
        record = _record("old", "one")
        conn.execute(
            "INSERT INTO workspaces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [getattr(record, name) for name in V1_COLUMNS],
        )

    async def scenario() -> None:
        store = Store(f"sqlite:///{path}")
        await store.connect()
        try:
            assert await store.schema_version() == LATEST
            found = await store.by_container_name("c-old-one")
            assert found is not None and (found.project_id, found.workspace_id) == ("old", "one")
        finally:
            await store.disconnect()

    asyncio.run(scenario())
    with sqlite3.connect(path) as conn:
        indexes = [row[1] for row in conn.execute("PRAGMA index_list(workspaces)")]
        assert "workspaces_container_name" in indexes


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store("postgresql://nobody:nothing@127.0.0.1:1/none")
        with pytest.raises(StoreUnavailable, match="reachable"):
            await store.connect()

    asyncio.run(scenario())


def test_sqlite_records_are_kept_in_memory_and_every_write_shows(tmp_path: Path) -> None:
    """On SQLite (one process) a record read once is answered from memory; each update, a delete and a read that
    overlaps a write still show at once."""

    async def main() -> None:
        path = tmp_path / "kept.db"
        store = Store(f"sqlite:///{path}")
        await store.connect()
        await store.migrate()
        try:
            await store.create(_record("p", "w"))
            first = await store.get("p", "w")
            assert first is not None and await store.get("p", "w") is first  # the same object: from memory
            await store.update("p", "w", theme="Dark+")
            updated = await store.get("p", "w")
            assert updated is not None and updated.theme == "Dark+"
            # A read racing a write is not kept: the write lands while the read waits on the database.
            reading = asyncio.create_task(store.get("p", "w"))
            await asyncio.sleep(0)
            await store.update("p", "w", theme="Light+")
            await reading
            again = await store.get("p", "w")
            assert again is not None and again.theme == "Light+"
            assert await store.delete("p", "w") is True
            assert await store.get("p", "w") is None
        finally:
            await store.disconnect()

    asyncio.run(main())
