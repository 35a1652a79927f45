"""Workspace templates: what a workspace is made from (image, limits, published ports, environment) and how it is
run (idle timeout, warm-pool size). An operator describes them in one TOML file (IDE_TEMPLATES); without one, the
built-in set below is used. Settings give every value a template leaves out.

    # templates.toml
    default = "python"                  # optional: the template /start uses when none is asked for

    [templates.python]
    image = "ide-backend/python:latest"
    description = "Python 3 with pip, venv and a C toolchain"
    memory_mb = 4096                    # optional, like every key below: IDE_MEMORY_LIMIT_MB otherwise
    cpus = 2.0
    pids = 512
    disk_mb = 10240
    ports = [8080]
    env = { PYTHONUNBUFFERED = "1" }
    idle_timeout = 3600                 # seconds, 0 = never
    pool_size = 2
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ValidationFailed
from ..settings import Settings

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


class _TemplateFile(BaseModel):
    """One template as the file writes it (every key but `image` optional)."""

    model_config = ConfigDict(extra="forbid")

    image: str = Field(min_length=1)
    description: str = ""
    memory_mb: int | None = Field(default=None, ge=16)
    cpus: float | None = Field(default=None, gt=0)
    pids: int | None = Field(default=None, ge=16)
    disk_mb: int | None = Field(default=None, ge=16)
    ports: list[int] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    idle_timeout: float | None = Field(default=None, ge=0)
    pool_size: int | None = Field(default=None, ge=0, le=64)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: str | None = None
    templates: dict[str, _TemplateFile] = Field(min_length=1)


@dataclass(frozen=True)
class Template:
    """A template with every value resolved (the file's, else the settings')."""

    name: str
    image: str
    description: str
    memory_mb: int
    cpus: float
    pids: int
    disk_mb: int | None
    ports: tuple[int, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    idle_timeout: float = 0.0
    pool_size: int = 0


def _builtin(settings: Settings) -> _File:
    """The set shipped with the backend; scripts/build-images.sh builds their images (vscode: --code-server)."""
    return _File(
        default="base",
        templates={
            "base": _TemplateFile(
                image=settings.workspace_image, description="Debian with bash, git, curl (the workspace image)"
            ),
            "python": _TemplateFile(
                image="ide-backend/python:latest", description="Python 3 with pip, venv and a C toolchain"
            ),
            "node": _TemplateFile(image="ide-backend/node:latest", description="Node.js and npm"),
            "vscode": _TemplateFile(
                image="ide-backend/code-server:latest",
                description="VS Code in the browser (code-server) on the workspace image",
                pool_size=0,  # an idle code-server costs memory: none kept ready unless the file says so
            ),
        },
    )


class Templates:
    """The templates in force, by name, and the default one."""

    def __init__(self, settings: Settings) -> None:
        parsed = _read(Path(settings.templates)) if settings.templates else _builtin(settings)
        self._by_name = {name: _resolve(name, raw, settings) for name, raw in parsed.templates.items()}
        default = settings.default_template or parsed.default or next(iter(self._by_name))
        if default not in self._by_name:
            raise ValueError(f"the default template {default!r} is not one of {self.names()}")
        self.default = default

    def names(self) -> list[str]:
        return list(self._by_name)

    def all(self) -> list[Template]:
        return list(self._by_name.values())

    def get(self, name: str | None) -> Template:
        """The named template (the default for None); NotFound naming the known ones otherwise."""
        template = self._by_name.get(name or self.default)
        if template is None:
            raise ValidationFailed(
                f"template: no template {name!r}; known templates: {', '.join(self.names())}",
                fields=["template"],
                known=self.names(),
            )
        return template


def _read(path: Path) -> _File:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read the templates file {path} (IDE_TEMPLATES): {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"the templates file {path} is not valid TOML: {exc}") from exc
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"the templates file {path} is not valid: {exc}") from exc
    for name in parsed.templates:
        if not re.match(NAME_PATTERN, name):
            raise ValueError(f"template name {name!r} in {path}: use lowercase letters, digits, '_' and '-'")
    return parsed


def _resolve(name: str, raw: _TemplateFile, settings: Settings) -> Template:
    return Template(
        name=name,
        image=raw.image,
        description=raw.description,
        memory_mb=raw.memory_mb or settings.memory_limit_mb,
        cpus=raw.cpus or settings.cpu_limit,
        pids=raw.pids or settings.pids_limit,
        disk_mb=raw.disk_mb,
        ports=tuple(raw.ports if raw.ports is not None else settings.publish_ports),
        env=dict(raw.env),
        idle_timeout=raw.idle_timeout if raw.idle_timeout is not None else settings.idle_timeout,
        # No warm pools on a swarm yet (runtime/swarm.py): a template's own pool size is not used there.
        pool_size=0
        if settings.runtime == "swarm"
        else raw.pool_size
        if raw.pool_size is not None
        else settings.pool_size,
    )
