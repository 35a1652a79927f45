"""The workspace containers as the engine last told this process: an in-memory view that /status and /start of a
running workspace answer from, instead of asking the engine each time, kept exact by the engine's event stream.

What "exact" means, and how it is kept:

- An entry is the engine's own answer (an inspect), kept only while nothing can have changed the container without
  this process hearing of it. Every container event but the few that change nothing of its state (exec_*, attach,
  resize, top, copy, ...) drops the entry of the container it names (by name and by id; a rename drops every
  entry), and the next call inspects again. `die`, `destroy`, `pause`, `unpause`, `kill`, `stop`, `start`, `oom`,
  `update` all change what /status says, so all of them are followed (the stream is not filtered by action).
- Entries are filled only while the event stream is open, and only by an inspect that began after it opened: the
  subscription asks for the events since a moment before the request (`since`), so nothing that happened between
  the engine's answer and its subscription is missed. Any break of the stream (a closed connection, an engine
  restart) empties the view and nothing is filled until the stream is open again. (`since` is this host's clock:
  the engine's is taken to be the same, as status.py's re-subscription after a break already does.)
- An inspect that overlaps an event (any state-changing event of any container, counted by one number) or a change
  this process makes itself is not kept: its answer may predate the change while the event has already passed.
- Changes this process makes (start, stop, removal, a fork's pause) drop the entry before and after they happen and
  refuse fills while they run: the caller's next /status sees them at once, without waiting for their events.
- Only containers carrying this instance's label are kept (the stream follows those only); an absent container is
  never kept (its name may be taken again by a create or a claim from the warm pool).

What remains is the stream's own delay: a change made by someone else (`docker kill`, `docker rm -f`, `docker pause`,
another backend process) shows once its event reaches this process, normally within a millisecond or two of the
engine acting (events are handled one after another, so one waits while the one before it is handled, which on
PostgreSQL may read the database); between the engine acting and the event arriving the view still answers what
was true just before (as an inspect sent a moment earlier would have). Network changes (`docker network
disconnect`) are network events, not container events, and are not followed: a container's address is re-read at
its next start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..runtime import ContainerState, Runtime, RuntimeEvent

# Container events that change nothing an inspect answers (the rest, and any new one, drop the entry).
_UNCHANGING = frozenset(
    {"exec_create", "exec_start", "exec_die", "exec_detach", "attach", "detach", "resize", "top", "export", "copy",
     "archive-path", "extract-to-dir", "commit"}
)  # fmt: skip


class ContainerStates:
    """The last inspect of each workspace container, trusted while the event stream says nothing changed."""

    def __init__(self, runtime: Runtime, instance_label: tuple[str, str]) -> None:
        self._runtime = runtime
        self._label_key, self._label_value = instance_label
        self._entries: dict[str, ContainerState] = {}  # by container name
        self._changes = 0  # events, breaks and our own changes so far: an inspect overlapping one is not kept
        self._changing: dict[str, int] = {}  # container names this process is changing now
        self._open = False
        self.hits = 0
        self.misses = 0

    # -- the event stream (status.py) -------------------------------------------------------------------------

    def opened(self) -> None:
        """The event stream is open (and covers everything since a moment before it was asked for)."""
        self._changes += 1
        self._entries.clear()
        self._open = True

    def broke(self) -> None:
        """The event stream broke: nothing is known until it is open again."""
        self._open = False
        self._changes += 1
        self._entries.clear()

    def saw(self, event: RuntimeEvent) -> None:
        """A container event: drop what it may have changed."""
        if event.action in _UNCHANGING:
            return
        self._changes += 1
        if event.action == "rename":
            self._entries.clear()  # the event names the new name only
            return
        self._entries.pop(event.name, None)
        if event.container_id:
            for name in [n for n, s in self._entries.items() if s.id == event.container_id]:
                del self._entries[name]

    # -- readers ----------------------------------------------------------------------------------------------

    async def inspect(self, name: str) -> ContainerState | None:
        """The container's state: the view's, or the engine's (kept when nothing can have changed meanwhile)."""
        state = self._entries.get(name)
        if state is not None:
            self.hits += 1
            return state
        self.misses += 1
        before = self._changes
        state = await self._runtime.inspect(name)
        if (
            state is not None
            and self._open
            and before == self._changes
            and name not in self._changing
            and state.name == name
            and state.labels.get(self._label_key) == self._label_value
        ):
            self._entries[name] = state
        return state

    @contextlib.contextmanager
    def changing(self, name: str) -> Iterator[None]:
        """This process changes the container (start, stop, remove, pause): forget it before and after, and keep
        no inspect of it meanwhile."""
        self._forget(name)
        self._changing[name] = self._changing.get(name, 0) + 1
        try:
            yield
        finally:
            self._changing[name] -= 1
            if not self._changing[name]:
                del self._changing[name]
            self._forget(name)

    def _forget(self, name: str) -> None:
        self._changes += 1
        self._entries.pop(name, None)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses}
