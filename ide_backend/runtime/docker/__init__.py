"""The Docker implementation of the runtime seam, over aiodocker."""

from .exec import MAX_CHUNK
from .runtime import AGENT_LABEL, DockerRuntime

__all__ = ["AGENT_LABEL", "MAX_CHUNK", "DockerRuntime"]
