"""Summarise a py-spy raw profile (`py-spy record --format raw`, as `bench.py --py-spy DIR` writes): the functions
with the most samples of their own (self) and the most samples under them (total), as percentages.

    .venv/bin/python bench/profile_summary.py DIR/server.txt [--top 20] [--match websockets --match ours]

`--match` keeps only the stacks with a frame containing one of the given strings, e.g. to split the bench client's
own profile into its websocket side (`websockets`, `ours (`) and its raw aiodocker side (`aiohttp`, `raw (`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

# "function (path/to/file.py:123)" -> "function (file.py)": lines of one function add up.
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match['name']} ({match['file'].rsplit('/', 1)[-1]})"


def summarise(path: Path, top: int, match: list[str]) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        if match and not any(m in stack for m in match):
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    if not samples:
        return f"{path}: no samples{' matching ' + ', '.join(match) if match else ''}"
    lines = [f"{path}: {samples} samples{' matching ' + ', '.join(match) if match else ''}", "  self:"]
    lines += [f"    {100 * n / samples:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("  total (self + callees):")
    lines += [f"    {100 * n / samples:5.1f}%  {name}" for name, n in total.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Top functions of a py-spy raw profile.")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--match", action="append", default=[], help="keep stacks with a frame containing this")
    args = parser.parse_args(argv)
    print(summarise(args.profile, args.top, args.match))
    return 0


if __name__ == "__main__":
    sys.exit(main())
