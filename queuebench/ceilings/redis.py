"""redis-benchmark (Debian redis-tools): LPUSH then RPOP of `-n` values of `-d` bytes.

Tuned as Redis's benchmark documentation advises for throughput: 50 clients (`-c`), each
pipelining 16 commands (`-P`). LPUSH fills one list and RPOP empties it, in that order, so
every RPOP returns a value of the size measured. It runs in a database of its own (`--dbnum`),
so no queue of a pair shares its key.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess

from queuebench.ceilings.ceiling import Rates, messages_for
from queuebench.services import SERVICES
from queuebench.services.catalog import HOST
from queuebench.services.processes import CommandFailed, run

SERVICE = "redis"
TOOL = "redis-benchmark LPUSH / RPOP"
CLIENTS = 50
PIPELINE = 16
DATABASE = 15
LIST_KEY = "mylist"  # the key redis-benchmark's LPUSH and RPOP use
TOOL_TIMEOUT_SEC = 600


def default_messages(size_bytes: int) -> int:
    # The list is held in the broker's memory until RPOP empties it: keep it near 200 MB.
    return messages_for(size_bytes, least=10_000, most=1_000_000, total_bytes=200_000_000)


def measure(size_bytes: int, messages: int) -> Rates:
    benchmark = shutil.which("redis-benchmark")
    if benchmark is None:
        raise CommandFailed("redis-benchmark is not installed: apt-get install redis-tools")
    port = SERVICES[SERVICE].port
    try:
        output = run([benchmark, "-h", HOST, "-p", str(port), "--dbnum", str(DATABASE),
                      "-t", "lpush,rpop", "-n", str(messages), "-d", str(size_bytes),
                      "-c", str(CLIENTS), "-P", str(PIPELINE), "--csv"],
                     timeout=TOOL_TIMEOUT_SEC)
    finally:
        subprocess.run([shutil.which("redis-cli") or "redis-cli", "-h", HOST, "-p", str(port),
                        "-n", str(DATABASE), "DEL", LIST_KEY], capture_output=True)
    # "test","rps","avg_latency_ms",...: one row per command.
    rows = {row[0]: row for row in csv.reader(io.StringIO(output)) if row}
    if "LPUSH" not in rows or "RPOP" not in rows:
        raise ValueError(f"no LPUSH and RPOP rows in redis-benchmark's output: {output[-300:]}")
    return Rates(float(rows["LPUSH"][1]), float(rows["RPOP"][1]),
                 settings={"clients": CLIENTS, "pipeline": PIPELINE, "dbnum": DATABASE},
                 raw={"produce": ",".join(rows["LPUSH"]), "consume": ",".join(rows["RPOP"])})
