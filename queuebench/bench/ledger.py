"""How much one poll of the ledger costs with many consumer files: a benchmark, not a test.

    python -m queuebench.bench.ledger [--files 900] [--lines 20] [--polls 200] [--appends 5]
    python -m queuebench.bench.ledger --reader /tmp/old_ledger.py   # another LedgerReader

It writes `--files` receipt files of `--lines` lines each (receipts, noted starts, another run's
receipts, some duplicates) into a temporary folder and times, with `--polls` polls each: a poll
that finds nothing new, a poll after one line was appended to each of `--appends` files, and a
poll while the folder's mtime is recent (the reader lists it again on each poll then).
Each figure is timed twice: `poll()` alone, and as the engine polls for progress (poll, then
count the distinct sequence numbers). It prints the median, min and max and the counts read; it
asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from queuebench.engine import ledger

# The folder's mtime is set this far back, as in a run whose consumers started a while ago: a
# reader may list a folder changed within the last moment again on every poll.
FOLDER_AGE_SEC = 10


def load_reader(path: str | None) -> tuple[type, str]:
    """The LedgerReader class to time: this package's, or the one defined in the file `path`."""
    if path is None:
        return ledger.LedgerReader, f"{ledger.__name__} ({ledger.__file__})"
    spec = importlib.util.spec_from_file_location("queuebench_bench_reader", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.LedgerReader, path


def write_ledger(folder: Path, run_id: str, files: int, lines: int) -> tuple[int, int]:
    """Receipt files as consumers leave them; return (receipts, distinct seqs) of `run_id`."""
    other = str(uuid.uuid4())
    receipts, seqs, seq = 0, set(), 0
    now = time.time_ns()
    for n in range(files):
        text = []
        for i in range(lines):
            if i % 4 == 0:
                text.append(f"{run_id} {seq} {now} {now + 1} started\n")
            elif i % 10 == 9:
                text.append(f"{other} {seq} {now} {now + 1} ok\n")
            else:
                dup = i % 7 == 6  # a redelivery of the previous message
                s = seq - 1 if dup and seq else seq
                text.append(f"{run_id} {s} {now} {now + 2} ok\n")
                receipts += 1
                seqs.add(s)
                seq += 0 if dup else 1
        (folder / f"receipts-{100_000 + n}.log").write_text("".join(text))
    return receipts, len(seqs)


def distinct_of(reader: Any) -> int:
    """Distinct sequence numbers so far: the reader's running count, or a set as before."""
    if hasattr(reader, "distinct"):
        return reader.distinct
    return len({r.seq for r in reader.receipts})


def time_polls(polls: int, before: Callable[[int], None], step: Callable[[], object]) -> list[int]:
    """`step` timed `polls` times (ns), `before(i)` run untimed ahead of each."""
    costs = []
    for i in range(polls):
        before(i)
        started = time.perf_counter_ns()
        step()
        costs.append(time.perf_counter_ns() - started)
    return costs


def figures(label: str, costs: list[int]) -> str:
    return (f"{label:<44} median {statistics.median(costs) / 1000:9.1f} us   "
            f"min {min(costs) / 1000:9.1f} us   max {max(costs) / 1000:9.1f} us")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m queuebench.bench.ledger",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=900, help="consumer files (default 900)")
    parser.add_argument("--lines", type=int, default=20, help="lines per file (default 20)")
    parser.add_argument("--polls", type=int, default=200, help="polls timed per figure")
    parser.add_argument("--appends", type=int, default=5,
                        help="files that get a new line before each poll of the second figure")
    parser.add_argument("--reader", help="a Python file defining another LedgerReader to time")
    args = parser.parse_args(argv)
    reader_class, reader_name = load_reader(args.reader)
    run_id = str(uuid.uuid4())
    with tempfile.TemporaryDirectory(prefix="queuebench-bench-") as tmp:
        folder = Path(tmp)
        receipts, distinct = write_ledger(folder, run_id, args.files, args.lines)
        aged = time.time() - FOLDER_AGE_SEC
        os.utime(folder, (aged, aged))
        names = sorted(folder.iterdir())[:max(1, args.appends)]
        seq = [10_000_000]

        def append(i: int, count: int = args.appends) -> None:
            for path in names[:count]:
                with path.open("a") as f:
                    f.write(f"{run_id} {seq[0]} 1 2 ok\n")
                seq[0] += 1

        reader = reader_class(folder, run_id)

        def poll() -> object:
            return reader.poll()

        def poll_and_count() -> object:
            reader.poll()
            return distinct_of(reader)

        print(f"reader: {reader_name}")
        print(f"{args.files} files x {args.lines} lines, {args.polls} polls per figure, "
              f"{sys.implementation.name} {sys.version.split()[0]}")
        first = time_polls(1, lambda i: None, poll)
        print(figures("first poll (reads everything)", first))
        print(f"  read {len(reader.receipts)} receipts, {distinct_of(reader)} distinct "
              f"(written: {receipts}, {distinct}), last_start_ns set: {reader.last_start_ns > 0}")
        print(figures("poll(), nothing new", time_polls(args.polls, lambda i: None, poll)))
        print(figures("poll() + distinct count, nothing new",
                      time_polls(args.polls, lambda i: None, poll_and_count)))
        print(figures(f"poll(), a line appended to {len(names)} files",
                      time_polls(args.polls, append, poll)))
        print(figures(f"poll() + distinct count, {len(names)} files appended",
                      time_polls(args.polls, append, poll_and_count)))
        os.utime(folder)  # as when a consumer started within the last moment
        print(figures("poll(), folder changed just now",
                      time_polls(args.polls, lambda i: None, poll)))
        appended = 2 * args.polls * len(names)
        print(f"  read {len(reader.receipts)} receipts, {distinct_of(reader)} distinct "
              f"(written: {receipts + appended}, {distinct + appended})")
        close = getattr(reader, "close", None)
        if close is not None:
            close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
