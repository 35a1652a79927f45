"""The container runtime: a Protocol the service depends on, and its Docker implementation."""

from .base import (
    STDERR,
    STDOUT,
    ContainerSpec,
    ContainerState,
    CopyResult,
    ExecOutput,
    ExecSession,
    HeldSession,
    HeldTerminal,
    NetworkPolicy,
    PathStat,
    Runtime,
    RuntimeEvent,
)
from .docker import DockerRuntime

__all__ = [
    "STDERR",
    "STDOUT",
    "ContainerSpec",
    "ContainerState",
    "CopyResult",
    "DockerRuntime",
    "ExecOutput",
    "ExecSession",
    "HeldSession",
    "HeldTerminal",
    "NetworkPolicy",
    "PathStat",
    "Runtime",
    "RuntimeEvent",
]
