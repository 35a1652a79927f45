"""Facts about the machine and the code a bench run measured, saved with its results."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import httpx

REPO = Path(__file__).resolve().parent.parent


def machine_info(docker_version: dict[str, Any]) -> dict[str, Any]:
    meminfo = {line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()[:3]}
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_total_kb": meminfo.get("MemTotal"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker_version": docker_version.get("Version"),
        "docker_api_version": docker_version.get("ApiVersion"),
        "loadavg_at_start": list(os.getloadavg()),
        "packages": {"httpx": httpx.__version__, "aiodocker": aiodocker.__version__, "aiohttp": aiohttp.__version__},
    }


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty_files": len(git("status", "--porcelain").splitlines())}
