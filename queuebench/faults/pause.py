"""A frozen worker: every process of the consumers' sessions stopped with SIGSTOP (a long GC
pause, a hung task), then continued with SIGCONT. Longer than a pair's lease or visibility
timeout, it shows who gets duplicates."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from queuebench.engine.watchdog import session_members
from queuebench.faults.base import HealOrder

STOP_WAIT_SEC = 2.0


class PauseFault:
    kind = "consumer-pause"

    def __init__(self, session_ids: list[int]) -> None:
        self.session_ids = list(session_ids)
        self.paused: list[int] = []

    def heal_order(self) -> HealOrder:
        """The processes to continue: listed here, before inject() stops exactly these, so the
        healer knows them before any is stopped."""
        self.paused = [pid for session in self.session_ids for pid in session_members(session)]
        return HealOrder(paused=list(self.paused))

    def inject(self) -> None:
        if not self.paused:
            self.heal_order()
        _signal(self.paused, signal.SIGSTOP)
        # A signal lands when the process is next scheduled: in force once each shows stopped.
        deadline = time.monotonic() + STOP_WAIT_SEC
        while any(_state(pid) not in "Tt" for pid in self.paused) and time.monotonic() < deadline:
            time.sleep(0.005)

    def heal(self) -> None:
        _signal(self.paused, signal.SIGCONT)
        self.paused = []


def _state(pid: int) -> str:
    """The process's state letter ("T": stopped); "T" too once it is gone: nothing runs."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "T"


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            os.kill(pid, signum)
