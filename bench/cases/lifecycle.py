"""b, g, h: a workspace made, removed and forked. POST /start of a new workspace of each template, claimed from the
warm pool and created cold by a pool-off server, and of a running one; POST /delete of a stopped and of a running
workspace; POST /fork of a running one. Each next to the raw Docker work that makes, removes or copies the same
things (runner.py restates the container config)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import httpx
from measure import Row, progress
from runner import STOP_TIMEOUT, TEMPLATE_IMAGES, USER, Bench, RawWorkspace

# A templates file giving the built-in `vscode` template (pool_size 0 there: an idle code-server costs memory) a
# warm pool of the default size; its image and limits stay the built-in ones.
VSCODE_POOL = f"""default = "vscode"

[templates.vscode]
image = "{TEMPLATE_IMAGES["vscode"]}"
pool_size = 2
"""


@dataclass
class Made:
    """Workspaces a row has made, both sides, removed outside the clock before each timed call: nothing made earlier
    runs (or boots: code-server) while the next call is timed."""

    bench: Bench
    ours: list[tuple[httpx.AsyncClient, dict[str, str]]] = field(default_factory=list)
    raw: list[RawWorkspace] = field(default_factory=list)

    async def clear(self) -> None:
        while self.ours:
            http, ref = self.ours.pop()
            await self.bench.post("delete", ref, http)
        while self.raw:
            await self.bench.raw_remove(self.raw.pop())


def raw_start_label(bench: Bench, template: str) -> str:
    volume = "a bounded disk by hand (3 bind volumes; image, mkfs.ext4, loop mount)" if bench.disks else "a volume"
    return (
        f"{volume}, then aiodocker container create + start of {TEMPLATE_IMAGES[template]} in the {template} "
        "template's config (bench/README.md: The raw container config)"
    )


async def start_new_rows(
    bench: Bench, http: httpx.AsyncClient, templates: list[str], pooled: bool, made: Made, ids: itertools.count[int]
) -> None:
    """One row per template: POST /start of a new workspace of it on the server `http` talks to, next to the raw
    create + start. With `pooled`, every warm pool is let fill again before each timed call (of either side)."""
    mode = "warm pool" if pooled else "pool off"
    for template in templates:

        async def ours(template: str = template) -> None:
            ref = {"projectId": "benchstart", "workspaceId": f"{template}-{next(ids)}"}
            await bench.start_workspace(ref["projectId"], ref["workspaceId"], template, http)
            made.ours.append((http, ref))

        async def raw(template: str = template) -> None:
            made.raw.append(await bench.raw_start(template))

        async def settle() -> None:
            await made.clear()
            if pooled:
                await bench.pool_full(http)

        before = (await bench.pool(http))["templates"][template]
        ours_stats, raw_stats = await bench.paired(bench.plan.starts, ours, raw, settle, settle)
        after = (await bench.pool(http))["templates"][template]
        if pooled:
            bench.details.setdefault("start_pool", {})[template] = {
                "size": after["size"],
                "claims": after["hits"] - before["hits"],
                "cold_creates": after["misses"] - before["misses"],
                "rounds": bench.plan.starts + bench.plan.warmup,
            }
        bench.rows.append(
            Row(
                f"start_new_{'pool' if pooled else 'cold'}_{template}",
                f"b. POST /start {template}, new, {mode}",
                ours_stats,
                raw_stats,
                raw_start_label(bench, template),
            )
        )
        await made.clear()


async def case_start(bench: Bench) -> None:
    """b. POST /start of a new workspace of each template vs the raw volume(s) + container create + start of that
    template's config: claimed from the warm pool (the bench's server keeps one of 2 for base, python and node; a
    second server one for vscode), then created cold by a server with the pool off."""
    templates = [t for t in bench.plan.templates if t in bench.templates]
    skipped = [t for t in bench.plan.templates if t not in templates]
    if skipped:
        progress(f"start: no image for template(s) {', '.join(skipped)}: skipped")
    bench.details["start_skipped_templates"] = skipped
    # Each row removes what it made; after a failure the sweeps remove it (a side server's instance as it stops,
    # the bench's own at the end, raw containers, volumes and disks included: they carry its instance label).
    made = Made(bench)
    ids = itertools.count(1)
    bench.details["start_servers"] = {
        "warm pool, but vscode": "the bench's server (built-in templates: a pool of 2 each, none for vscode)",
        **({"warm pool, vscode": f"a second server, IDE_TEMPLATES = {VSCODE_POOL!r}"} if "vscode" in templates else {}),
        "pool off": "another server, IDE_POOL_SIZE=0 (no template keeps a pool)",
    }
    await start_new_rows(bench, bench.http, [t for t in templates if t != "vscode"], True, made, ids)
    if "vscode" in templates:
        (bench.tmp / "vscode-pool.toml").write_text(VSCODE_POOL)
        async with bench.side_server("vscode", IDE_TEMPLATES=str(bench.tmp / "vscode-pool.toml")) as http:
            await bench.pool_full(http, timeout=300)
            await start_new_rows(bench, http, ["vscode"], True, made, ids)
    async with bench.side_server("cold", IDE_POOL_SIZE="0") as http:
        await start_new_rows(bench, http, templates, False, made, ids)


async def case_delete(bench: Bench) -> None:
    """g. POST /delete of a stopped and of a running workspace (base, claimed from the bench's server's warm pool)
    vs the raw removal of a raw-made container of the same config: `rm -f`, `volume rm` of each volume, the disk."""
    ids = itertools.count(1)
    for stopped in (True, False):
        ours_next: list[dict[str, str]] = []
        raw_next: list[RawWorkspace] = []

        async def make_ours(stopped: bool = stopped, ours_next: list[dict[str, str]] = ours_next) -> None:
            ref = {"projectId": "benchdelete", "workspaceId": f"w{next(ids)}"}
            await bench.start_workspace(ref["projectId"], ref["workspaceId"])
            await bench.pool_full()
            if stopped:
                await bench.post("stop", ref)
            ours_next.append(ref)

        async def make_raw(stopped: bool = stopped, raw_next: list[RawWorkspace] = raw_next) -> None:
            ws = await bench.raw_start()
            if stopped:
                await bench.docker.containers.container(ws.container_id).stop(t=STOP_TIMEOUT)
            raw_next.append(ws)

        async def ours(ours_next: list[dict[str, str]] = ours_next) -> None:
            await bench.post("delete", ours_next.pop())

        async def raw(raw_next: list[RawWorkspace] = raw_next) -> None:
            await bench.raw_remove(raw_next.pop())

        state = "stopped" if stopped else "running"
        ours_stats, raw_stats = await bench.paired(bench.plan.starts, ours, raw, make_ours, make_raw)
        what = "3 volumes (workspace, home, /tmp), then the disk unmounted and its folder deleted"
        removes = (
            f"`docker rm -f` of the {state} container (aiodocker, no -v), `docker volume rm` of its "
            f"{what if bench.disks else 'volume'}"
        )
        bench.rows.append(Row(f"delete_{state}", f"g. POST /delete, {state}", ours_stats, raw_stats, removes))


async def case_fork(bench: Bench) -> None:
    """h. POST /fork of a running workspace holding one file of random bytes (1 GB; 100 MB with --quick) vs the same
    copy by hand: the new workspace's volume(s) and disk, a helper container of the workspace image mounting the
    source read-only and the target, the source paused from the helper's start to its exit, the helper removed."""
    size = bench.plan.fork_mb * 1_000_000
    fill = f"head -c {size} /dev/urandom > big.bin"
    source = {"projectId": "benchfork", "workspaceId": "src"}
    await bench.start_workspace(source["projectId"], source["workspaceId"])
    await bench.post("exec", {**source, "command": fill, "timeout": 900})
    raw_source = await bench.raw_start()
    filled = await bench.docker.containers.container(raw_source.container_id).exec(
        ["sh", "-c", fill], user=USER, workdir="/workspace"
    )
    async with filled.start(detach=False) as stream:
        while await stream.read_out() is not None:
            pass
    ids = itertools.count(1)
    ours_made: list[dict[str, str]] = []
    raw_made: list[RawWorkspace] = []
    paused: list[float] = []

    async def clear() -> None:
        while ours_made:
            await bench.post("delete", ours_made.pop())
        while raw_made:
            await bench.raw_remove(raw_made.pop())

    async def ours() -> None:
        target = f"copy{next(ids)}"
        answer = await bench.post("fork", {**source, "toWorkspaceId": target})
        paused.append(float(answer["pausedMs"]))
        ours_made.append({"projectId": source["projectId"], "workspaceId": target})

    async def raw() -> None:
        _, target = await bench.raw_volumes()
        raw_made.append(target)
        await bench.raw_copy(raw_source, target)

    ours_stats, raw_stats = await bench.paired(bench.plan.forks, ours, raw, clear, clear)
    await clear()
    await bench.post("delete", source)
    await bench.raw_remove(raw_source)
    bench.details["fork"] = {"source_mb": bench.plan.fork_mb, "paused_ms": paused}
    what = "3 volumes and a disk" if bench.disks else "a volume"
    bench.rows.append(
        Row(
            "fork_running",
            f"h. POST /fork, running, {bench.plan.fork_mb} MB",
            ours_stats,
            raw_stats,
            f"{what} by hand, then a helper container `cp -a` of the workspace (and home) with the source paused",
        )
    )
