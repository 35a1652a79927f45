"""The printed report: the table of ours next to raw Docker, and the notes under it."""

from __future__ import annotations

from typing import Any

from measure import Row


def fmt_ms(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms"


def render_table(rows: list[Row]) -> str:
    header = ["case", "n", "ours median", "ours p95", "raw median", "raw p95", "ratio"]
    lines: list[list[str]] = [header]
    for row in rows:
        raw = row.raw
        lines.append(
            [
                row.label,
                str(row.ours.n) if raw is None or raw.n == row.ours.n else f"{row.ours.n}/{raw.n}",
                fmt_ms(row.ours.median),
                fmt_ms(row.ours.p95) if row.ours.n > 1 else "-",
                fmt_ms(raw.median) if raw else "-",
                fmt_ms(raw.p95) if raw and raw.n > 1 else "-",
                f"{row.ratio:.2f}x" if row.ratio is not None else "-",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join([first, *rest]) + " |"

    out = [fmt(lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in lines[1:]]
    out.append("")
    out.append("raw is, per case:")
    out += [f"  {row.label}: {row.raw_label}" for row in rows]
    return "\n".join(out)


def notes_summary(details: dict[str, Any]) -> str:
    """Figures that explain the table: where the time goes inside the server, and its memory."""
    lines: list[str] = []
    if raw := details.get("raw_config"):
        drift = raw["differs_from_the_backend"]
        lines.append(
            f"raw config: {'with' if raw['bounded_disks'] else 'without'} a bounded disk, as the server's workspaces "
            "here; "
            + (f"differs from a container the server made in: {'; '.join(drift)}" if drift else "same as theirs")
        )
    if pools := details.get("start_pool"):
        claims = [
            f"{name} {p['claims']}/{p['rounds']} (pool of {p['size']}, {p['cold_creates']} created cold)"
            for name, p in pools.items()
        ]
        lines.append(f"start, warm pool: new workspaces claimed from it (warm-up included): {', '.join(claims)}")
    if skipped := details.get("start_skipped_templates"):
        lines.append(f"start: template(s) with no image here, skipped: {', '.join(skipped)}")
    if exec_details := details.get("exec"):
        server = exec_details["server_duration_ms"]
        lines.append(
            f"exec: the server's own durationMs (runtime.exec alone) median {fmt_ms(server['median_ms'])}, "
            f"p95 {fmt_ms(server['p95_ms'])}; raw exec still Running at its one inspect in "
            f"{exec_details['raw_running_at_first_inspect']}/{exec_details['raw_rounds_including_warmup']} rounds"
        )
    if sync := details.get("sync"):
        lines.append(
            f"sync: request body {sync['request_body_bytes'] / 1e6:.1f} MB for {sync['files']} files in "
            f"{sync['folders']} folders; {sync['one_by_one_requests']} one-file requests took "
            f"{fmt_ms(sync['one_by_one_total_ms'])} in all"
        )
    if stream := details.get("ws_stream"):
        lines.append(
            f"ws stream: {stream['output_mb']} MB, ours {stream['ours_mb_per_s']} MB/s vs raw "
            f"{stream['raw_mb_per_s']} MB/s ({stream['throughput_ratio']}x raw throughput); first byte median "
            f"ours {fmt_ms(stream['ours_first_byte_ms']['median_ms'])}, raw "
            f"{fmt_ms(stream['raw_first_byte_ms']['median_ms'])}; stdout messages per run "
            f"{stream['ours_stdout_messages']}, raw chunks {stream['raw_chunks']}"
        )
    memory = details.get("server_memory_kb", {})
    if "after_sync" in memory:
        lines.append(
            f"backend memory: RSS {memory['at_start']['VmRSS'] / 1024:.1f} MiB at start, peak (VmHWM) "
            f"{memory['after_sync']['VmHWM'] / 1024:.1f} MiB through the sync case"
        )
    return "\n".join(lines)


def concurrency_summary(details: dict[str, Any]) -> str:
    c = details.get("concurrency")
    if not c:
        return ""
    mem = c["server_memory_kb"]
    lines = [
        f"concurrency: {c['workspaces_running']}/{c['workspaces_requested']} workspaces started "
        f"{c['start_concurrency']} at a time in {c['starts_total_ms'] / 1000:.1f} s "
        f"(per start median {fmt_ms(c['start_latency']['median_ms'])}, {c['start_errors']} errors); "
        f"burst of {c['burst']} concurrent exec:",
    ]
    sides = {
        "ours": "ours",
        "raw": "raw (no connect timeout)",
        "raw_backend_timeouts": "raw with the backend's aiohttp timeouts",
    }
    for side, name in sides.items():
        s = c[side]
        ok = (
            f"ok p50 {fmt_ms(s['ok_p50_ms'])}, ok p99 {fmt_ms(s['ok_p99_ms'])}"
            if s["ok_p50_ms"] is not None
            else "none ok"
        )
        lines.append(
            f"  {name}: errors {s['errors']}/{s['requests']}, p50 {fmt_ms(s['p50_ms'])}, p99 {fmt_ms(s['p99_ms'])}, "
            f"{ok}, wall {fmt_ms(s['wall_ms'])}, {s['ok_per_second']:.1f} ok/s"
        )
        kinds = sorted(s["error_kinds"].items(), key=lambda item: -item[1])
        lines += [f"      {count} x {kind}" for kind, count in kinds[:5]]
        if len(kinds) > 5:
            lines.append(f"      ... {len(kinds) - 5} more kinds in the JSON")
        if s.get("running_at_inspect"):
            lines.append(f"      {s['running_at_inspect']} exec(s) still Running at their one inspect (not errors)")
    lines.append(
        f"  backend RSS: {mem['rss_before'] / 1024:.1f} MiB before, peak {mem['peak_vmhwm'] / 1024:.1f} MiB "
        f"(VmHWM{', reset before the case' if mem['peak_reset_before_case'] else ''}), "
        f"{mem['rss_after'] / 1024:.1f} MiB after"
    )
    return "\n".join(lines)
