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

`python -m queuebench.engine.watchdog --marked MARK` does the same for a local test cluster
(cluster/__init__.py), whose processes are not one session: Ray's servers, its workers and the
consumers they start all carry `QUEUEBENCH_MARK=MARK` in their environment, inherited from the
run, and at EOF the family is killed: every process carrying the mark and every descendant of
one. The mark alone is not enough: Ray's dashboard and runtime-env agents rename themselves
(setproctitle writes the new title over their environment), so their mark is readable only
sometimes; they are found as children of the marked raylet, which the watchdog notes while the
run lives (once the raylet is gone, they are init's). The run closes the pipe itself once the
cluster is shut down, so that what Ray leaves behind even then goes too.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

MARK_VARIABLE = "QUEUEBENCH_MARK"
POLL_SEC = 0.5  # how often an idle watchdog checks that its session still has a process
KILL_ROUNDS = 50  # a session that forks while being killed is listed and killed again
LATE_SWEEP_SEC = 5.0  # how long a cluster's watchdog keeps killing marked processes


def live_processes() -> Iterator[tuple[Path, list[str]]]:
    """Each live process's /proc folder and the fields of its stat after the parenthesised
    command: state, ppid, pgrp, session, ... (the start time is the 20th of them).

    A zombie is left out: it runs nothing, is nobody's parent, and only waits to be reaped.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it exited while we looked
        if fields[0] != "Z":
            yield entry, fields


def session_members(session_id: int) -> list[int]:
    """Every live process whose session is `session_id` (the consumer started its own)."""
    return [int(entry.name) for entry, fields in live_processes()
            if int(fields[3]) == session_id]


def marked_family(mark: str, known: dict[int, str], spare: set[int]) -> dict[int, str]:
    """Every live process but those in `spare` that carries QUEUEBENCH_MARK=`mark`, is one of
    `known` still, or descends from one of these: pid -> start time (a pid may be reused)."""
    needle = f"{MARK_VARIABLE}={mark}".encode()
    started, children = {}, {}
    family = {}
    for entry, fields in live_processes():
        pid = int(entry.name)
        if pid in spare:
            continue
        started[pid] = fields[19]
        children.setdefault(int(fields[1]), []).append(pid)
        with contextlib.suppress(OSError):  # it exited while we looked
            if known.get(pid) == started[pid] or \
                    needle in (entry / "environ").read_bytes().split(b"\0"):
                family[pid] = started[pid]
    parents = list(family)
    while parents:
        for child in children.get(parents.pop(), []):
            if child not in family:
                family[child] = started[child]
                parents.append(child)
    return family


def kill_session(session_id: int) -> None:
    """SIGKILL every process of the session, as ConsumerProcess.kill does."""
    kill_all(lambda: session_members(session_id))


def kill_all(listed: Callable[[], list[int]]) -> None:
    """SIGKILL every process `listed` lists until it lists none."""
    for _ in range(KILL_ROUNDS):
        members = listed()
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


def watch_marked(mark: str, run_gone: int = 0) -> None:
    """At EOF from `run_gone`, kill the family of `mark` (see marked_family), spared this
    process and the run; until then, note its members every POLL_SEC."""
    spare = {os.getpid(), os.getppid()}
    known: dict[int, str] = {}
    while not select.select([run_gone], [], [], POLL_SEC)[0] or os.read(run_gone, 1):
        known = marked_family(mark, known, spare)

    def family() -> list[int]:
        nonlocal known
        known = marked_family(mark, known, spare)
        return list(known)

    # A process forked as its parent died was init's before a sweep saw it: sweep a while
    # longer (Ray's agents escaped a single sweep 1 time in 3).
    late = time.monotonic() + LATE_SWEEP_SEC
    while time.monotonic() < late:
        kill_all(family)
        time.sleep(0.2)


if __name__ == "__main__":
    if sys.argv[1] == "--marked":
        watch_marked(sys.argv[2])
    else:
        watch(int(sys.argv[1]))
