"""c. /sync of ~10 MB in 1,000 files (a new tree, then over the same paths, then one file per request) next to
`docker cp` of the same files."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

from measure import Row, Stats, elapsed_ms
from runner import Bench

# Sync payload: FILE_COUNT files of FILE_BYTES bytes in FOLDERS folders (~10 MB).
FILE_COUNT = 1000
FILE_BYTES = 10 * 1024
FOLDERS = 20


def make_tree(root: Path) -> dict[str, str]:
    """FILE_COUNT files of FILE_BYTES ASCII bytes in FOLDERS folders, on disk and as a /sync `files` map."""
    files: dict[str, str] = {}
    per_folder = FILE_COUNT // FOLDERS
    for i in range(FILE_COUNT):
        rel = f"d{i // per_folder:02d}/f{i:04d}.txt"
        content = base64.b64encode(os.urandom(FILE_BYTES * 3 // 4)).decode()[:FILE_BYTES]
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        files[rel] = content
    return files


async def case_sync(bench: Bench) -> None:
    """c. /sync of ~10 MB in 1,000 files vs docker cp of the same tree; and as 1,000 one-file /sync requests."""
    plan = bench.plan
    tree = bench.tmp / "tree"
    files = make_tree(tree)
    total_bytes = sum(len(v) for v in files.values())
    ref = {"projectId": "bench", "workspaceId": "sync"}
    await bench.start_workspace("bench", "sync")
    raw_id = (await bench.raw_start()).container_id
    tag = {"ours": 0, "raw": 0}

    def body(prefix: str) -> bytes:
        return json.dumps({**ref, "files": {f"{prefix}/{k}": v for k, v in files.items()}}).encode()

    # A new tree each round (new<k>/d00..d19/...), ours and docker cp alternating which goes first; the request
    # body is encoded before the clock starts.
    next_body = body("new0")
    body_bytes = len(next_body)

    async def raw_new() -> None:
        tag["raw"] += 1
        await bench.docker_cp(str(tree), f"{raw_id}:/workspace/new{tag['raw']}")

    ours_ms: list[float] = []
    raw_ms: list[float] = []
    for i in range(plan.warmup + plan.syncs):
        for which in ("ours", "raw") if i % 2 == 0 else ("raw", "ours"):
            began = time.perf_counter()
            if which == "ours":
                await bench.post("sync", next_body)
            else:
                await raw_new()
            took = elapsed_ms(began)
            if which == "ours":
                tag["ours"] += 1
                next_body = body(f"new{tag['ours']}")
            if i >= plan.warmup:
                (ours_ms if which == "ours" else raw_ms).append(took)
    bench.rows.append(
        Row(
            "sync_new",
            f"c. POST /sync {FILE_COUNT} files, {total_bytes / 1e6:.0f} MB, new tree",
            Stats(tuple(ours_ms)),
            Stats(tuple(raw_ms)),
            "`docker cp DIR ctr:/workspace/NEW` of the same tree (CLI process included) into a running container "
            "of the same image",
        )
    )
    bench.note_memory("after_sync_new")

    # The same paths again: every folder exists, so the backend stats each of the 1,000 files before writing.
    over_body = body("over")
    await bench.post("sync", over_body)
    await bench.docker_cp(f"{tree}/.", f"{raw_id}:/workspace/over")  # dest missing: created with the contents

    async def ours_over() -> None:
        await bench.post("sync", over_body)

    async def raw_over() -> None:
        await bench.docker_cp(f"{tree}/.", f"{raw_id}:/workspace/over")

    ours_stats, raw_stats = await bench.paired(plan.syncs, ours_over, raw_over)
    bench.rows.append(
        Row(
            "sync_overwrite",
            f"c. POST /sync {FILE_COUNT} files, overwrite",
            ours_stats,
            raw_stats,
            "`docker cp DIR/. ctr:/workspace/over` over the same files",
        )
    )

    # One file per request, sequentially: plan.one_file requests (all FILE_COUNT in a full run).
    items = list(files.items())[: plan.one_file]
    bodies = [json.dumps({**ref, "files": {f"one/{k}": v}}).encode() for k, v in items]
    one_ms: list[float] = []
    began_all = time.perf_counter()
    for one in bodies:
        began = time.perf_counter()
        await bench.post("sync", one)
        one_ms.append(elapsed_ms(began))
    total_ms = elapsed_ms(began_all)

    single = tree / items[0][0]
    cp_one_ms: list[float] = []
    for k in range(plan.warmup + plan.cp_one):
        began = time.perf_counter()
        await bench.docker_cp(str(single), f"{raw_id}:/workspace/one-{k}.txt")
        if k >= plan.warmup:
            cp_one_ms.append(elapsed_ms(began))
    whole_tree = len(bodies) == FILE_COUNT
    bench.rows.append(
        Row(
            "sync_one_by_one_total",
            f"c. {len(bodies)} one-file /sync requests, total",
            Stats((total_ms,)),
            raw_stats if whole_tree else None,
            "the `docker cp` of the whole tree (overwrite row)"
            if whole_tree
            else "none: --quick sends only part of the tree one file at a time",
        )
    )
    bench.rows.append(
        Row(
            "sync_one_file",
            "c. one-file /sync, per request",
            Stats(tuple(one_ms)),
            Stats(tuple(cp_one_ms)),
            "`docker cp FILE ctr:/workspace/one-K.txt` of one 10 KB file (CLI process included)",
        )
    )
    bench.details["sync"] = {
        "files": FILE_COUNT,
        "folders": FOLDERS,
        "file_bytes": FILE_BYTES,
        "content_bytes": total_bytes,
        "request_body_bytes": body_bytes,
        "one_by_one_requests": len(bodies),
        "one_by_one_total_ms": round(total_ms, 3),
        "raw_container": raw_id,
    }
    bench.note_memory("after_sync")
