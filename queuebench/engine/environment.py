"""The environment manifest: what machine and software produced a run's numbers."""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from queuebench.errors import QueuebenchError


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


SOURCE = Path(__file__).parent  # the checkout whose commit a run records


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=SOURCE, capture_output=True,
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


def same_code(ran_at: str | None, now_at: str | None) -> bool:
    """Whether two commits measure alike: the same, or differing only in reports/ (a run's
    results committed midway must not stop it from going on). A commit with uncommitted
    changes matches only itself."""
    if ran_at == now_at:
        return True
    if not ran_at or not now_at or "+" in ran_at or "+" in now_at:
        return False
    return _git("diff", "--quiet", ran_at, now_at, "--", ":(top)",
                ":(top,exclude)reports") is not None


# A stock record as the JSON payloads carry it, for the machine's yardstick.
YARDSTICK_RECORD = {"symbol": "ACME", "date": "2026-12-01", "open": 187.1, "high": 188.9,
                    "low": 186.2, "close": 188.4, "volume": 51234567}
YARDSTICK_KEYS = ("json_round_trips_per_sec", "fsync_4k_ms")


def machine_yardstick(rounds: int = 5, round_trips: int = 2000,
                      fsyncs: int = 20) -> dict[str, float]:
    """Two fixed pieces of work timed as a run starts, so that a reader can tell runs on
    machines of different speed (or on one machine under load) apart: JSON round trips of a
    stock record a second on one core (the best of `rounds`, as pyperf takes a minimum: the
    machine's speed, not its noise) and the median time to write and fsync 4 KiB in the
    temporary folder (what a durable broker pays for each flush), about 0.2 s in all."""
    best = math.inf
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(round_trips):
            json.loads(json.dumps(YARDSTICK_RECORD))
        best = min(best, time.perf_counter() - started)
    times = []
    with tempfile.TemporaryFile() as scratch:
        for _ in range(fsyncs):
            started = time.perf_counter()
            scratch.write(b"\0" * 4096)
            scratch.flush()
            os.fsync(scratch.fileno())
            times.append(time.perf_counter() - started)
    return {"json_round_trips_per_sec": round(round_trips / best),
            "fsync_4k_ms": round(statistics.median(times) * 1000, 3)}


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
        **machine_yardstick(),
    }


def available_memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise QueuebenchError("/proc/meminfo has no MemAvailable: cannot tell what fits in memory")


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) clock ticks of every CPU since boot, from /proc/stat; None elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


@dataclass(frozen=True)
class Usage:
    """The machine's CPU ticks and the harness process's own CPU seconds at a moment."""

    machine: tuple[int, int] | None
    harness_cpu_sec: float
    at: float  # time.monotonic()


def usage_now() -> Usage:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return Usage(cpu_times(), own.ru_utime + own.ru_stime, time.monotonic())


def harness_peak_rss_mb() -> float:
    """The most memory the harness process has held so far (its workers not counted)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def host_load(before: Usage) -> dict[str, float | None]:
    """How busy the machine was since `before`, the harness's own share of it, the harness's
    peak memory, and the load average now: a figure measured on a busy machine says so, and a
    reader sees how much of the machine the harness took from the broker and the workers."""
    after = usage_now()
    busy = None
    if before.machine and after.machine and after.machine[1] > before.machine[1]:
        busy = round(100 * (after.machine[0] - before.machine[0])
                     / (after.machine[1] - before.machine[1]), 1)
    cores = os.cpu_count() or 1
    wall = after.at - before.at
    harness = (round(100 * (after.harness_cpu_sec - before.harness_cpu_sec) / (wall * cores), 1)
               if wall > 0 else None)
    try:
        load_1m = float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        load_1m = None
    return {"cpu_busy_pct": busy, "harness_cpu_pct": harness,
            "harness_peak_rss_mb": harness_peak_rss_mb(), "load_1m": load_1m,
            "cores": os.cpu_count()}
