"""Only the database's own failures are a 503: a mistake in our own code stays an error of ours."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy.exc

from ide_backend.errors import StoreUnavailable
from ide_backend.store import Store, WorkspaceRecord


def _record() -> WorkspaceRecord:
    return WorkspaceRecord.new(
        project_id="p",
        workspace_id="w",
        container_name="c",
        container_id=None,
        volume_name="v",
        image="img",
        password="pw",
        theme=None,
    )


def test_a_programming_error_is_not_reported_as_the_database_failing(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(f"sqlite:///{tmp_path / 'store.db'}")
        await store.connect()
        try:
            await store.create(_record())
            with pytest.raises(sqlalchemy.exc.CompileError):  # a column the table does not have: our bug
                await store.update("p", "w", no_such_column="x")
        finally:
            await store.disconnect()

    asyncio.run(scenario())


def test_a_database_that_fails_is_store_unavailable(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "store.db"
        store = Store(f"sqlite:///{path}")
        await store.connect()
        other = sqlite3.connect(path)
        try:
            await store.create(_record())
            other.execute("BEGIN EXCLUSIVE")  # another process holds the file: SQLite gives up after its busy wait
            with pytest.raises(StoreUnavailable, match="updating a workspace"):
                await store.update("p", "w", theme="Dark")
        finally:
            other.rollback()
            other.close()
            await store.disconnect()

    asyncio.run(scenario())
