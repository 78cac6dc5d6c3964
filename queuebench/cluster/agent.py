"""The agent on each node of a cluster: it holds that host's consumer and producer processes.

One `HostAgent` per node, a Ray actor pinned to its node by a resource only that node has. It
starts, stops, kills and pauses its consumers exactly as a run does on one machine (it holds a
`ConsumerFleet` of them), and hands back the receipts they wrote, from the offset the engine has
read up to, so the engine's ledger sees them as if they were local files. It runs producer
processes as a run does on one machine too (`ProducerProcesses`), their clocks set to the
engine's. This module does not import Ray: the engine makes the class an actor
(cluster/__init__.py), one that serves several calls at once, so that receipts keep coming while
its producers send.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from queuebench import adapters
from queuebench.engine.consumer import ConsumerFleet
from queuebench.engine.environment import available_memory_bytes, machine_manifest
from queuebench.engine.ledger import RECEIPT_FILES
from queuebench.engine.producers import ProducerFailed, ProducerProcesses, Report, Sending
from queuebench.engine.watchdog import session_members
from queuebench.errors import ConsumerFailed

# Receipts handed back by one call at most, per file: a large backlog comes over several polls.
READ_LIMIT = 1 << 22


class HostAgent:
    """The consumer fleets of one node, by the key of the repeat they belong to."""

    def __init__(self, node: int) -> None:
        self.node = node
        self.root = Path(tempfile.mkdtemp(prefix=f"queuebench-node{node}-"))
        self.fleets: dict[str, ConsumerFleet] = {}
        self.producers: dict[str, ProducerProcesses] = {}

    def describe(self) -> dict[str, object]:
        """The host as a manifest lists it, and the memory it has free now."""
        info = machine_manifest()
        return {key: info[key] for key in ("host", "os", "cpu", "cores", "memory_gib", "python",
                                           "queuebench", "commit")} | {
            "memory_available_bytes": available_memory_bytes()}

    def clock_ns(self) -> int:
        """This host's wall clock, for the engine to measure how far it is from its own."""
        return time.time_ns()

    def create(self, key: str, spec: adapters.AdapterSpec, count: int,
               settings: dict[str, object]) -> None:
        """A fleet of `count` consumers of the pair, its ledger and log in this host's folder."""
        folder = self.root / key
        self.fleets[key] = ConsumerFleet(adapters.from_spec(spec), count=count,
                                         ledger_dir=folder / "ledger",
                                         log_path=folder / "consumer.log", **settings)

    def start_producers(self, key: str, spec: adapters.AdapterSpec, sending: Sending, messages: int,
                        seqs: list[range], clock_offset_ns: int) -> str | None:
        """A producer process for each share of `seqs`, each with its producer open; what went
        wrong, as one line."""
        try:
            self.producers[key] = ProducerProcesses(spec, sending, messages, seqs,
                                                    clock_offset_ns)
        except ProducerFailed as exc:
            return str(exc)
        return None

    def go(self, key: str, first_ns: int) -> None:
        """The producers start sending, the first message meant at `first_ns` (engine's clock)."""
        self.producers[key].go(first_ns)

    def producer_reports(self, key: str) -> tuple[list[Report], str | None]:
        """Once every producer finished: their reports, or what went wrong."""
        try:
            return self.producers[key].reports(), None
        except ProducerFailed as exc:
            return [], str(exc)

    def forget_producers(self, key: str) -> None:
        if (producers := self.producers.pop(key, None)) is not None:
            producers.close()

    def start(self, key: str) -> tuple[list[int], int]:
        """Start the members not running; every running member's session, and how often the
        first member was started."""
        fleet = self.fleets[key]
        with signals_unblocked():
            fleet.start()
        return fleet.session_ids(), fleet.starts

    def stop(self, key: str, timeout: float) -> str | None:
        """The library's graceful stop to every member; what went wrong, as one line."""
        try:
            self.fleets[key].stop(timeout)
        except ConsumerFailed as exc:
            return str(exc)
        return None

    def kill(self, key: str) -> None:
        self.fleets[key].kill()

    def check_alive(self, key: str) -> str | None:
        try:
            self.fleets[key].check_alive()
        except ConsumerFailed as exc:
            return str(exc)
        return None

    def revive(self, key: str) -> list[int]:
        with signals_unblocked():
            return self.fleets[key].revive()

    def pause(self, key: str, signum: int) -> None:
        """SIGSTOP (or SIGCONT) every process of every member's session."""
        for session in self.fleets[key].session_ids():
            for pid in session_members(session):
                with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                    os.kill(pid, signum)

    def memory_bytes(self, key: str, proportional: bool) -> int:
        with contextlib.suppress(RuntimeError):  # a member stopped while we looked
            return self.fleets[key].memory_bytes(proportional=proportional)
        return 0

    def log_tail(self, key: str) -> str:
        return self.fleets[key].log_tail()

    def read_receipts(self, key: str, offsets: dict[str, int]) -> dict[str, bytes]:
        """What each receipts file of the fleet holds past the offset the engine read up to
        (a file the engine has not seen yet: from its start)."""
        ledger = self.root / key / "ledger"
        new = {}
        for path in sorted(ledger.glob(RECEIPT_FILES)):
            with path.open("rb") as source:
                source.seek(offsets.get(path.name, 0))
                if data := source.read(READ_LIMIT):
                    new[path.name] = data
        return new

    def ensure_stopped(self, key: str) -> None:
        if key in self.fleets:
            self.fleets[key].ensure_stopped()

    def forget(self, key: str) -> bytes:
        """Stop what still runs and delete the fleet's files (the engine holds its receipts);
        the consumers' log."""
        fleet = self.fleets.pop(key, None)
        if fleet is not None:
            fleet.ensure_stopped()
        log = self.root / key / "consumer.log"
        text = log.read_bytes() if log.exists() else b""
        shutil.rmtree(self.root / key, ignore_errors=True)
        return text

    def forget_all(self) -> None:
        """At the run's end: every fleet stopped and this host's folder deleted."""
        for key in list(self.producers):
            self.forget_producers(key)
        for key in list(self.fleets):
            self.forget(key)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def signals_unblocked() -> Iterator[None]:
    """Ray's worker threads block SIGINT, and a process started from one inherits the mask: a
    consumer whose graceful stop is SIGINT (huey, Dramatiq) would never see it."""
    blocked = signal.pthread_sigmask(signal.SIG_SETMASK, set())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
