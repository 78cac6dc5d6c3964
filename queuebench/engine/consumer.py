"""A consumer as an OS process the runner can start, stop gracefully, kill and restart."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from queuebench.adapters.base import Adapter
from queuebench.engine.interrupt import Interrupt
from queuebench.engine.watchdog import live_processes, session_members
from queuebench.errors import ConsumerFailed
from queuebench.faults.pause import PauseFault
from queuebench.redact import redact
from queuebench.worker.handler import ConsumerConfig
from queuebench.worker.receipts import receipts_file

# The line that ends a traceback: "sqlalchemy.exc.OperationalError: (sqlite3...) database is locked"
ERROR_LINE = re.compile(r"[\w.]+(Error|Exception|Exit|Interrupt)\b[^ ]*: ")
# A slow warm shutdown is a result, not a failure: a Celery prefork child waits up to 30 s for
# its parent to read its last result (billiard's _ensure_messages_consumed), and on celery+sqs
# about one stop in seven took 31.8 s that way.
DEFAULT_STOP_TIMEOUT_SEC = 60.0
MEMORY_SAMPLE_SEC = 1.0
# A worker that exited during a fault is started again this long after, as a supervisor would.
REVIVE_AFTER_SEC = 1.0
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def sessions_memory_bytes(session_ids: set[int], *, proportional: bool = False) -> int:
    """Memory of every live process of these sessions (each consumer's whole tree: pool
    children and work horses included), in one pass over /proc. Resident (RSS, as `ps` shows
    it: shared pages count in each process), or with `proportional` each shared page split
    between its sharers (PSS: what one more forked child really costs)."""
    total = 0
    for entry, fields in live_processes():
        if int(fields[3]) not in session_ids:
            continue
        try:
            if proportional:
                pss = next(line for line in (entry / "smaps_rollup").read_text().splitlines()
                           if line.startswith("Pss:"))
                total += int(pss.split()[1]) * 1024
            else:
                total += int(fields[21]) * PAGE_BYTES  # rss, in pages
        except OSError:
            continue  # it exited while we looked
    return total


class ConsumerProcess:
    """The program a user would run for this pair, with the handler wired to our ledger."""

    def __init__(self, adapter: Adapter, *, ledger_dir: Path, work_ms: float, log_path: Path,
                 fmt: str | None = None, concurrency: int = 1, fail_fraction: float = 0.0,
                 batch_receipts: bool = False):
        """`batch_receipts`: the handler writes its receipts in batches, which only a workload
        that never stops or kills its consumers may ask for (see worker/receipts.py)."""
        self.adapter = adapter
        self.config = ConsumerConfig(adapter.url, adapter.queue, adapter.variant.name,
                                     str(ledger_dir), work_ms, fmt, concurrency, fail_fraction,
                                     batch_receipts)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exit_code: int | None = None  # of its last exit on its own
        self.exited_at: float | None = None  # when it did, while it waits to be revived

    def start(self) -> None:
        if self.running:
            raise RuntimeError("consumer already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = self.adapter.consumer_argv(self.config.concurrency)  # in the pair's own unit
        # Interrupted in here, the run would not know the worker it started, nor stop it.
        with self.log_path.open("ab") as log, Interrupt.deferred():
            shown = redact(" ".join(argv))  # no password in the log
            log.write(f"--- start {self.starts + 1}: {shown}\n".encode())
            log.flush()
            # A session of its own, so that a kill reaches the worker's children too.
            self._process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, **self.config.to_env(), **self.adapter.consumer_env()},
            )
            # Kills the session should this process die without cleaning up (SIGKILL, SIGHUP):
            # see watchdog.py. Its own session keeps a terminal's Ctrl-C and hang-up away from
            # it; it has the consumer's configuration in its environment (not the adapter's
            # secrets), so it counts as one of the run's processes.
            self._watchdog = subprocess.Popen(
                [sys.executable, "-m", "queuebench.engine.watchdog", str(self._process.pid)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, **self.config.to_env()},
            )
        self.starts += 1

    @property
    def session_id(self) -> int:
        return self._require_process().pid  # started with a session of its own

    @property
    def receipts_path(self) -> Path:
        return receipts_file(Path(self.config.ledger_dir), self.session_id)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def started(self) -> bool:
        """Started and not yet reaped: one that exited on its own and awaits its revival is
        not (there is nothing to stop or kill)."""
        return self._process is not None

    def check_alive(self) -> None:
        """Raise ConsumerFailed, with the end of its log, if the process died on its own."""
        if self._process is not None and self._process.poll() is not None:
            code = self.exit_code = self._process.returncode
            self._forget()
            raise ConsumerFailed(f"{self.adapter.scheme} consumer exited with code {code}; "
                                 f"last log lines: {self.log_tail()}")

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_SEC) -> float:
        """Ask the worker to shut down the way its library documents; return seconds taken.

        A worker that does not exit within `timeout` is killed, and ConsumerFailed says so.
        """
        started = time.monotonic()
        self.ask_to_stop()
        self.await_stop(started + timeout)
        return time.monotonic() - started

    def ask_to_stop(self) -> None:
        self._require_process().send_signal(self.adapter.graceful_stop_signal)

    def await_stop(self, give_up_at: float) -> None:
        """Wait for the exit `ask_to_stop` asked for; kill the worker at `give_up_at`."""
        process = self._require_process()
        try:
            process.wait(max(0.0, give_up_at - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise ConsumerFailed(
                f"{self.adapter.scheme} consumer ignored {self.adapter.graceful_stop_signal.name}"
                f" until it was killed; last log lines: {self.log_tail()}") from None
        self._forget()

    def kill(self) -> None:
        """SIGKILL the worker and every process it started, as a machine or container loss would.

        The whole session, not just the process group: some workers move their children into
        groups of their own (RQ's work horse calls setpgrp), and those must die too.
        """
        self.send_kill()
        self.reap()

    def send_kill(self) -> None:
        process = self._require_process()
        for pid in [process.pid, *session_members(process.pid)]:
            with contextlib.suppress(ProcessLookupError):  # exited already
                os.kill(pid, signal.SIGKILL)

    def reap(self) -> None:
        self._require_process().wait()
        self._forget()

    def ensure_stopped(self) -> None:
        if self.running:
            with contextlib.suppress(ConsumerFailed):  # stop() killed it: all we need here
                self.stop(timeout=10)
        elif self._process is not None:
            self._forget()

    def log_tail(self, lines: int = 5) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return log_tail(self.log_path.read_text(errors="replace"), lines) or "(empty log)"

    def _forget(self) -> None:
        """The worker is gone and reaped: end its watchdog (before the pipe closes, so that it
        never reads EOF and kills what is left of the session: exactly as before it existed)."""
        self._process = None
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog.stdin.close()
            self._watchdog = None

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("consumer not started")
        return self._process


def log_tail(log: str, lines: int) -> str:
    """The last `lines` lines of a worker's log, joined on one line, led by the error that ended
    its last traceback when a long message (SQLAlchemy prints the SQL) pushed it out of them."""
    every = log.strip().splitlines()
    tail = every[-lines:]
    starts = [i for i, line in enumerate(every) if line.startswith("Traceback (most recent")]
    error = next((line for line in every[starts[-1]:] if ERROR_LINE.match(line)), None) \
        if starts else None
    return " | ".join(tail if error is None or error in tail else [error, "...", *tail])


class ConsumerFleet:
    """`count` consumer processes of one pair, started together; a stop or a kill reaches every
    one before waiting for any, as a deploy or a lost machine would.

    On one machine the nodes of a workload's placement are groups of processes (a fault aimed at
    node 2 reaches the processes placed there), so that a file means the same with and without a
    cluster (queuebench/cluster/ has the fleet whose nodes are hosts)."""

    def __init__(self, adapter: Adapter, *, count: int, nodes: list[int] | None = None,
                 **member_settings: object):
        """`nodes`: the node of each member (default: all on node 1); `member_settings` are
        each ConsumerProcess's (ledger_dir, work_ms, log_path, ...)."""
        self.members = [ConsumerProcess(adapter, **member_settings) for _ in range(count)]
        self.nodes = nodes or [1] * count
        self.peak_rss_bytes = 0  # of the whole fleet, sampled while it ran
        self._sampling: threading.Event | None = None

    def sample_memory(self) -> None:
        """Add a sample of the running fleet's resident memory to its peak."""
        with contextlib.suppress(RuntimeError):  # a member stopped while we looked
            self.peak_rss_bytes = max(self.peak_rss_bytes, self.memory_bytes())

    def memory_bytes(self, *, proportional: bool = False) -> int:
        """The running members' memory now (see sessions_memory_bytes)."""
        return sessions_memory_bytes(set(self.session_ids()), proportional=proportional)

    def _sample_memory(self, stopping: threading.Event) -> None:
        while not stopping.wait(MEMORY_SAMPLE_SEC):
            self.sample_memory()

    def _stop_sampling(self) -> None:
        if self._sampling is not None:
            self._sampling.set()
            self._sampling = None

    @property
    def starts(self) -> int:
        return self.members[0].starts

    def start(self) -> None:
        """Start every member not running (after a stop aimed at one node: that node's)."""
        for member in self.members:
            if not member.running:
                member.start()
        if self._sampling is None:  # memory is sampled while the fleet runs
            self._sampling = threading.Event()
            threading.Thread(target=self._sample_memory, args=(self._sampling,), daemon=True,
                             name="consumer-memory").start()

    def check_alive(self) -> None:
        for member in self.members:
            member.check_alive()

    def revive(self) -> list[int]:
        """Start again each member that exited on its own, REVIVE_AFTER_SEC after it went, as
        a supervisor (systemd, Kubernetes) would; the exit codes of those that went."""
        codes, now = [], time.monotonic()
        for member in self.members:
            try:
                member.check_alive()
            except ConsumerFailed:
                codes.append(member.exit_code)
                member.exited_at = now
            if member.exited_at is not None and now - member.exited_at >= REVIVE_AFTER_SEC:
                member.exited_at = None
                member.start()
        return codes

    def on_node(self, node: int | None) -> list[ConsumerProcess]:
        """The members placed on `node`; None: every member."""
        return [member for member, at in zip(self.members, self.nodes, strict=True)
                if node in (None, at)]

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_SEC, *, node: int | None = None
             ) -> float:
        started = time.monotonic()
        members = [member for member in self.on_node(node) if member.started]
        for member in members:
            member.ask_to_stop()
        for member in members:
            member.await_stop(started + timeout)
        return time.monotonic() - started

    def kill(self, *, node: int | None = None) -> None:
        members = [member for member in self.on_node(node) if member.started]
        for member in members:
            member.send_kill()
        for member in members:
            member.reap()

    def pause_fault(self, node: int | None) -> PauseFault:
        """The pause fault: every process on `node` frozen, or with no node the first one."""
        members = self.on_node(node) if node else self.members[:1]
        return PauseFault([member.session_id for member in members if member.running])

    def ensure_stopped(self) -> None:
        self._stop_sampling()
        for member in self.members:
            member.ensure_stopped()

    def log_tail(self) -> str:
        return self.members[0].log_tail()  # they share one log

    def session_ids(self) -> list[int]:
        """Each running member's session, which names its receipts file (receipts-SID.log)."""
        return [member.session_id for member in self.members if member.running]

    def receipt_paths(self) -> list[Path]:
        """Each running member's receipts file, where the engine's ledger reads it."""
        return [member.receipts_path for member in self.members if member.running]

    def placement(self) -> list[dict[str, object]]:
        """Where each consumer process ran, for the results: its node (and host)."""
        return [{"node": node, "host": platform.node()} for node in self.nodes]
