"""Settings that depend on each other: what IDE_RUNTIME=swarm needs is filled in or refused at start-up, naming the
setting, before anything is created."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ide_backend.settings import Settings

SWARM = {"runtime": "swarm", "network": "shared", "disk_limit_mb": 0, "pool_size": 0}


def test_a_swarm_reaches_code_server_through_the_container_unless_told_otherwise() -> None:
    assert Settings(**SWARM).ide_upstream == "container"  # type: ignore[arg-type]
    assert Settings(runtime="docker").ide_upstream == "published"


def test_a_swarm_refuses_published_ports_and_what_it_does_not_do_yet() -> None:
    with pytest.raises(ValidationError, match="IDE_IDE_UPSTREAM=container"):
        Settings(**SWARM, ide_upstream="published")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="IDE_POOL_SIZE=0") as refused:
        Settings(**{**SWARM, "pool_size": 2})  # type: ignore[arg-type]
    assert "IDE_NETWORK" not in str(refused.value)  # only what is wrong is named


def test_the_environment_counts_as_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDE_IDE_UPSTREAM", "published")
    with pytest.raises(ValidationError, match="IDE_IDE_UPSTREAM=container"):
        Settings(**SWARM)  # type: ignore[arg-type]
