"""A consumer as an OS process the runner can start, stop gracefully, kill and restart."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from queuebench.adapters.base import Adapter
from queuebench.errors import ConsumerFailed
from queuebench.experiments.handler import ConsumerConfig

# A slow warm shutdown is a result, not a failure: a Celery prefork child waits up to 30 s for
# its parent to read its last result (billiard's _ensure_messages_consumed), and on celery+sqs
# about one stop in seven took 31.8 s that way.
DEFAULT_STOP_TIMEOUT_SEC = 60.0


def session_members(session_id: int) -> list[int]:
    """Every live process whose session is `session_id` (the consumer started its own)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited while we looked
        # Fields after the parenthesised command: state, ppid, pgrp, session, ...
        if int(stat.rpartition(")")[2].split()[3]) == session_id:
            members.append(int(entry.name))
    return members


class ConsumerProcess:
    """The program a user would run for this pair, with the handler wired to our ledger."""

    def __init__(self, adapter: Adapter, *, ledger_dir: Path, work_ms: float, log_path: Path):
        self.adapter = adapter
        self.config = ConsumerConfig(adapter.url, adapter.queue, adapter.variant.name,
                                     str(ledger_dir), work_ms)
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        if self.running:
            raise RuntimeError("consumer already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(self.adapter.consumer_argv())}\n"
                      .encode())
            log.flush()
            # A session of its own, so that a kill reaches the worker's children too.
            self._process = subprocess.Popen(
                self.adapter.consumer_argv(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, **self.config.to_env()},
            )
        self.starts += 1

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def check_alive(self) -> None:
        """Raise ConsumerFailed, with the end of its log, if the process died on its own."""
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            self._process = None
            raise ConsumerFailed(f"{self.adapter.scheme} consumer exited with code {code}; "
                                 f"last log lines: {self.log_tail()}")

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_SEC) -> float:
        """Ask the worker to shut down the way its library documents; return seconds taken.

        A worker that does not exit within `timeout` is killed, and ConsumerFailed says so.
        """
        process = self._require_process()
        started = time.monotonic()
        process.send_signal(self.adapter.graceful_stop_signal)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ConsumerFailed(
                f"{self.adapter.scheme} consumer ignored {self.adapter.graceful_stop_signal.name}"
                f" for {timeout:.0f} s and was killed") from None
        self._process = None
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the worker and every process it started, as a machine or container loss would.

        The whole session, not just the process group: some workers move their children into
        groups of their own (RQ's work horse calls setpgrp), and those must die too.
        """
        process = self._require_process()
        for pid in [process.pid, *session_members(process.pid)]:
            with contextlib.suppress(ProcessLookupError):  # exited already
                os.kill(pid, signal.SIGKILL)
        process.wait()
        self._process = None

    def ensure_stopped(self) -> None:
        if self.running:
            with contextlib.suppress(ConsumerFailed):  # stop() killed it: all we need here
                self.stop(timeout=10)
        elif self._process is not None:
            self._process = None

    def log_tail(self, lines: int = 5) -> str:
        if not self.log_path.exists():
            return "(no log)"
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        return " | ".join(tail) or "(empty log)"

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("consumer not started")
        return self._process
