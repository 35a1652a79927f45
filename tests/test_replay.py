"""The replay buffer of a websocket process, in process: seq numbers, replay after `since`, the buffer limit, the
exit, and a listener that falls behind being cut off with `slow_consumer`. No container: the buffer never touches
the process's session, so none is given (the test says so by passing a placeholder)."""

from __future__ import annotations

import asyncio
from typing import cast

from ide_backend.runtime import STDERR, STDOUT, ExecSession
from ide_backend.service.domain import WorkspaceRef
from ide_backend.service.replay import LISTENER_QUEUE, Outbox, Process

NO_SESSION = cast(ExecSession, object())  # never called by the buffer


def _process(buffer_limit: int = 1000, lag_limit: int = 10_000) -> Process:
    return Process(
        id="p1",
        ref=WorkspaceRef("p", "w"),
        session=NO_SESSION,
        timeout=None,
        command="make",
        tty=False,
        buffer_limit=buffer_limit,
        lag_limit=lag_limit,
        output_cap=1 << 30,
    )


def _drain(outbox: Outbox) -> list[dict[str, object]]:
    out = []
    while not outbox.empty():
        out.append(dict(outbox.get_nowait()))
    return out


def test_output_is_numbered_and_replayed_after_since() -> None:
    process = _process()
    live = Outbox()
    process.attach(live, 0)
    for text in ("a", "b", "c"):
        process.record(STDOUT, text)
    process.record(STDERR, "err")
    process.record(STDOUT, "")  # nothing to send: no seq used
    sent = _drain(live)
    assert [m["type"] for m in sent] == ["attached", "stdout", "stdout", "stdout", "stderr"]
    assert [m.get("seq") for m in sent[1:]] == [1, 2, 3, 4]

    late = Outbox()
    attached = process.attach(late, since=2)
    assert attached == {"type": "attached", "id": "p1", "firstSeq": 1, "nextSeq": 5, "running": True}
    assert [m.get("data") for m in _drain(late)] == [None, "c", "err"]


def test_the_buffer_drops_the_oldest_past_its_limit_and_says_where_it_starts() -> None:
    process = _process(buffer_limit=10)
    for _ in range(5):
        process.record(STDOUT, "x" * 4)
    assert process.buffered <= 10 and process.first_seq == 4
    outbox = Outbox()
    attached = process.attach(outbox, since=0)
    assert attached["firstSeq"] == 4 and attached["nextSeq"] == 6
    assert [m.get("seq") for m in _drain(outbox)[1:]] == [4, 5]


def test_exit_is_the_last_message_and_a_finished_process_replays_it() -> None:
    process = _process()
    live = Outbox()
    process.attach(live, 0)
    process.record(STDOUT, "done\n")
    process.finish(0, timed_out=False, reason=None)
    assert _drain(live)[-1] == {"type": "exit", "id": "p1", "exitCode": 0, "timedOut": False, "truncated": False}
    late = Outbox()
    process.attach(late, 0)
    replay = _drain(late)
    assert replay[0]["running"] is False and replay[-1]["type"] == "exit"
    assert late not in process.listeners  # nothing more will come


def test_a_listener_that_falls_behind_is_cut_off_and_can_attach_again() -> None:
    process = _process(buffer_limit=1 << 20, lag_limit=100)
    slow, fast = Outbox(), Outbox()
    process.attach(slow, 0)
    process.attach(fast, 0)
    for _ in range(30):
        process.record(STDOUT, "y" * 10)
        _drain(fast)  # this one keeps up
    kept = _drain(slow)
    assert kept[-1]["code"] == "slow_consumer" and slow not in process.listeners and fast in process.listeners
    seen = max(int(str(m["seq"])) for m in kept if "seq" in m)
    again = Outbox()
    process.attach(again, since=seen)
    assert [m.get("seq") for m in _drain(again)[1:]] == list(range(seen + 1, 31))


def test_a_full_queue_cuts_a_listener_off_too() -> None:
    process = _process(lag_limit=1 << 30)
    outbox = Outbox()
    process.attach(outbox, 0)
    for _ in range(LISTENER_QUEUE + 10):
        process.record(STDOUT, "z")
    assert outbox not in process.listeners and process.detached_since is not None


def test_outbox_counts_the_characters_waiting() -> None:
    async def scenario() -> None:
        outbox = Outbox()
        outbox.put_nowait({"type": "stdout", "data": "abc"})
        outbox.put_nowait({"type": "pong"})
        assert outbox.waiting_chars == 3
        await outbox.get()
        assert outbox.waiting_chars == 0

    asyncio.run(scenario())
