"""Kills a consumer's whole session if the run that started it dies without cleaning up.

`python -m queuebench.engine.watchdog SESSION_ID` runs beside each consumer, its stdin a
pipe whose write end only the run holds. When the run dies, however it dies (SIGKILL, a closed
terminal), the kernel closes that end and the watchdog reads EOF: it SIGKILLs every process of
the consumer's session and exits. A pipe rather than PR_SET_PDEATHSIG: EOF cannot be missed (it
waits in the pipe even if the run died before the watchdog got going), and it comes when the
run's process ends, not when the thread that started the watchdog does. PDEATHSIG on the worker
alone would not do: its own children (RQ's work horse, prefork pools) would survive it.

On the normal paths (stop, kill, restart) the run ends the watchdog itself, so that it never
touches a session the run is handling; it also exits on its own once the session is empty.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from pathlib import Path

POLL_SEC = 0.5  # how often an idle watchdog checks that its session still has a process
KILL_ROUNDS = 50  # a session that forks while being killed is listed and killed again


def session_members(session_id: int) -> list[int]:
    """Every live process whose session is `session_id` (the consumer started its own).

    A zombie is left out: it runs nothing and only waits for its parent to reap it.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it exited while we looked
        # Fields after the parenthesised command: state, ppid, pgrp, session, ...
        state, _, _, session = stat.rpartition(")")[2].split()[:4]
        if state != "Z" and int(session) == session_id:
            members.append(int(entry.name))
    return members


def kill_session(session_id: int) -> None:
    """SIGKILL every process of the session, as ConsumerProcess.kill does."""
    for _ in range(KILL_ROUNDS):
        members = session_members(session_id)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError):  # exited already
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def watch(session_id: int, run_gone: int = 0) -> None:
    """Until the session is empty: on EOF from `run_gone` (a descriptor), kill the session."""
    while session_members(session_id):
        if select.select([run_gone], [], [], POLL_SEC)[0] and not os.read(run_gone, 1):
            print(f"--- the run is gone: killing session {session_id}", flush=True)
            kill_session(session_id)
            return


if __name__ == "__main__":
    watch(int(sys.argv[1]))
