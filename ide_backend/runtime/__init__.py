"""The container runtime: a Protocol the service depends on, and its Docker implementation."""

from .base import ContainerSpec, ContainerState, ExecOutput, PathStat, Runtime
from .docker import DockerRuntime

__all__ = ["ContainerSpec", "ContainerState", "DockerRuntime", "ExecOutput", "PathStat", "Runtime"]
