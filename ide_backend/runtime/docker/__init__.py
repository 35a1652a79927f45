"""The Docker implementation of the runtime seam, over aiodocker.

client.py   the aiodocker adapter: every use of aiodocker's private API, nowhere else
runtime.py  DockerRuntime: containers, volumes, events; delegates to the modules below
exec.py     a Docker exec session, and running a command to its end
agent.py    the warm exec path: one attach stream per container to its ide-agent
archive.py  path stats, tar uploads, file reads, emptying the workspace (in a helper when stopped)
network.py  the isolated workspace network: the bridge, this backend's place on it, moving containers onto it
firewall.py the host's firewall rules around that network, written by a helper container on the engine's host
disk.py     bounded disks: a loop-mounted ext4 image per workspace for /workspace, home and /tmp, read-only root
hosthelper.py short-lived helper containers that act on the engine's host (firewall rules, disks)
parsing.py  Docker's JSON without I/O: container config out; inspect, events, path stats in
errors.py   aiodocker's and aiohttp's errors become ours
"""

from .agent import AGENT_LABEL
from .exec import MAX_CHUNK
from .runtime import DockerRuntime

__all__ = ["AGENT_LABEL", "MAX_CHUNK", "DockerRuntime"]
