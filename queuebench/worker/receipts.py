"""The receipt writer: one line per processed message, appended to the consumer's own file.

By default each line is one unbuffered write: a SIGKILL then loses nothing already written, which
a workload that stops or kills its consumers needs. A workload without consumer faults may batch
(`batched=True`): lines are held and written together every BATCH_LINES receipts, at least every
BATCH_MAX_AGE_SEC by a flusher thread, and at the process's exit, which saves a system call per
message where the handler's cost is measured against a client doing some microseconds a message.

When messages take work, a line also notes when work on each began, so the engine can aim a stop
at the task in hand. A handler meant to fail writes a "failed" line before it raises: the engine
then knows it ran, as opposed to never being delivered.

A line: `RUN_ID SEQ SENT_NS RECEIVED_NS STATUS`, STATUS one of "ok", "corrupt" (the payload's
digest did not match), "failed" (the handler raised on purpose) or "started".
"""

from __future__ import annotations

import multiprocessing.util
import os
import threading
from pathlib import Path

from queuebench.worker.envelope import Envelope

STARTED = "started"  # the status of a line that notes work beginning, not a receipt
FAILED = "failed"  # the handler ran and raised (fail_fraction): a receipt of a failed attempt
BATCH_LINES = 100  # a batched writer writes once this many lines are held...
BATCH_MAX_AGE_SEC = 0.05  # ...and no line waits longer than this


def exits_through_python() -> bool:
    """Whether this process's exit runs Python's exit hooks, which flush a batch.

    The process the engine started leads its own session and exits normally on its graceful
    stop; multiprocessing's children (dramatiq's worker processes) run its finalizers on the way
    out. A child forked by other means may end in `os._exit` (RQ's work horse, Celery's billiard
    pool), taking a held batch with it: it writes each receipt at once.
    """
    return os.getpid() == os.getsid(0) or multiprocessing.parent_process() is not None


def receipts_file(ledger_dir: Path, session_id: int) -> Path:
    """The file the consumer of this session writes its receipts to."""
    return ledger_dir / f"receipts-{session_id}.log"


class ReceiptWriter:
    """Appends receipts for one consumer process, one line per receipt.

    The file is named after the consumer's session, which the runner starts anew for each
    consumer start: the processes a worker forks (RQ forks one per job) append to the same file,
    each with its own O_APPEND descriptor, so each write (a line, or a batch of whole lines)
    lands whole. Threads of one process (huey's workers) share a writer.
    """

    def __init__(self, ledger_dir: Path, *, batched: bool = False) -> None:
        ledger_dir.mkdir(parents=True, exist_ok=True)
        path = receipts_file(ledger_dir, os.getsid(0))
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.batched = batched
        self._held: list[str] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()  # a forked child never writes what its parent held
        self._closed = threading.Event()
        if batched:
            threading.Thread(target=self._flush_often, name="receipt-flusher",
                             daemon=True).start()
            # Runs at a normal exit (atexit) and at a multiprocessing child's exit.
            multiprocessing.util.Finalize(self, self.flush, exitpriority=100)

    def write(self, envelope: Envelope, received_ns: int) -> None:
        self._append(envelope, received_ns, "ok" if envelope.payload_ok else "corrupt")

    def failed(self, envelope: Envelope, received_ns: int) -> None:
        """Note that the handler ran on `envelope` and is about to raise: a failed attempt."""
        self._append(envelope, received_ns, FAILED)

    def started(self, envelope: Envelope, received_ns: int) -> None:
        """Note that work on `envelope` began; it counts as received only once `write` runs."""
        self._append(envelope, received_ns, STARTED)

    def flush(self) -> None:
        """Write the lines held (a batched writer); nothing to do for an unbatched one."""
        with self._lock:
            if self._held and os.getpid() == self._pid:
                os.write(self._fd, "".join(self._held).encode())
            self._held.clear()

    def _append(self, envelope: Envelope, received_ns: int, status: str) -> None:
        line = f"{envelope.run_id} {envelope.seq} {envelope.sent_ns} {received_ns} {status}\n"
        if not self.batched:
            os.write(self._fd, line.encode())
            return
        with self._lock:
            self._held.append(line)
            full = len(self._held) >= BATCH_LINES
        if full:
            self.flush()

    def close(self) -> None:
        """Write what is held, stop the flusher and let go of the file."""
        self._closed.set()
        self.flush()
        os.close(self._fd)

    def _flush_often(self) -> None:
        while not self._closed.wait(BATCH_MAX_AGE_SEC):
            self.flush()
