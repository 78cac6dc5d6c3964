"""The environment manifest: what machine and software produced a run's numbers."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path


def _first_line_with(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def library_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_commit() -> str | None:
    """The git commit the code ran from, "+changes" if tracked files differ; None outside git."""
    # Only a checkout that tracks this very file: an installed copy may sit in another repository.
    if _git("ls-files", "--error-unmatch", Path(__file__).name) is None:
        return None
    commit = _git("rev-parse", "--short=10", "HEAD")
    if commit and _git("status", "--porcelain", "--untracked-files=no"):
        return commit + "+changes"
    return commit


def machine_manifest() -> dict[str, object]:
    mem_kb = _first_line_with("/proc/meminfo", "MemTotal")
    return {
        "host": platform.node(),
        "os": platform.platform(),
        "cpu": _first_line_with("/proc/cpuinfo", "model name") or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kb.split()[0]) / 2**20, 1) if mem_kb else None,
        "python": platform.python_version(),
        "queuebench": library_version("queuebench"),
        "commit": source_commit(),
    }


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) clock ticks of every CPU since boot, from /proc/stat; None elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def host_load(before: tuple[int, int] | None) -> dict[str, float | None]:
    """How busy the machine was since `before` (cpu_times()), and its load average now: a
    figure measured on a machine busy with something else says so."""
    after = cpu_times()
    busy = None
    if before and after and after[1] > before[1]:
        busy = round(100 * (after[0] - before[0]) / (after[1] - before[1]), 1)
    try:
        load_1m = float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        load_1m = None
    return {"cpu_busy_pct": busy, "load_1m": load_1m, "cores": os.cpu_count()}
