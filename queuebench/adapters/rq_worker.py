"""`python -m queuebench.adapters.rq_worker N -- COMMAND...`: N copies of an `rq worker` command.

An RQ worker runs one job at a time; more at once means more workers, which is how RQ is run
(a process manager starting several `rq worker`). This is that process manager, kept to what
the runner needs of a consumer process: the N workers are its children, in its session, so a
kill of the session reaches every worker and work horse; each signal it gets (SIGTERM or SIGINT,
RQ's warm shutdown; a second one, which makes RQ kill the horse) is passed on once to every
worker; it exits when all have exited. A worker that exits by itself, unasked, makes it stop the
others with SIGTERM and exit with that worker's code, as one `rq worker` dying would.

It imports nothing from RQ, so each worker starts exactly as the command alone would.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

POLL_SEC = 0.02  # how soon a signal is passed on and an exit noticed


def exit_code(returncode: int) -> int:
    """A child's code as a shell gives it: 128 + N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def run(copies: int, command: list[str]) -> int:
    received: list[int] = []  # signals to pass on, in order; each child gets each one once
    # Installed before the first child starts: a stop asked for meanwhile is not lost.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _frame: received.append(signum))
    children: list[subprocess.Popen[bytes]] = []
    passed_on: list[int] = []  # per child, how many of `received` it was sent
    failed: int | None = None  # the code of a worker that exited unasked
    while len(children) < copies and not received:
        children.append(subprocess.Popen(command, stdin=subprocess.DEVNULL))
        passed_on.append(0)
    while True:
        for index, child in enumerate(children):
            while passed_on[index] < len(received):
                if child.poll() is None:
                    child.send_signal(received[passed_on[index]])
                passed_on[index] += 1
        codes = [child.poll() for child in children]
        if all(code is not None for code in codes):
            break
        if failed is None and not received:
            failed = next((exit_code(code) for code in codes if code is not None), None)
            if failed is not None:
                print(f"rq_worker: a worker exited with code {failed}; stopping the others",
                      file=sys.stderr, flush=True)
                received.append(signal.SIGTERM)
                continue
        time.sleep(POLL_SEC)
    if failed is not None:
        return failed or 1  # exited unasked, even with 0: the consumer is not what it was
    return next((exit_code(c.returncode) for c in children if c.returncode), 0)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit() or int(argv[0]) < 1:
        print("usage: python -m queuebench.adapters.rq_worker N -- COMMAND...", file=sys.stderr)
        return 2
    return run(int(argv[0]), argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
