"""The receipt writer: one line per processed message, appended with one unbuffered write.

A SIGKILL then loses nothing already written. When messages take work, a line also notes when
work on each began, so the engine can aim a stop at the task in hand. A handler meant to fail
writes a "failed" line before it raises: the engine then knows it ran, as opposed to never being
delivered.

A line: `RUN_ID SEQ SENT_NS RECEIVED_NS STATUS`, STATUS one of "ok", "corrupt" (the payload's
digest did not match), "failed" (the handler raised on purpose) or "started".
"""

from __future__ import annotations

import os
from pathlib import Path

from queuebench.worker.envelope import Envelope

STARTED = "started"  # the status of a line that notes work beginning, not a receipt
FAILED = "failed"  # the handler ran and raised (fail_fraction): a receipt of a failed attempt


class ReceiptWriter:
    """Appends receipts for one consumer; one `os.write` per receipt, no buffering.

    The file is named after the consumer's session, which the runner starts anew for each
    consumer start: the processes a worker forks (RQ forks one per job) append to the same file,
    each with its own O_APPEND descriptor, so each line lands whole.
    """

    def __init__(self, ledger_dir: Path) -> None:
        ledger_dir.mkdir(parents=True, exist_ok=True)
        path = ledger_dir / f"receipts-{os.getsid(0)}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, envelope: Envelope, received_ns: int) -> None:
        self._append(envelope, received_ns, "ok" if envelope.payload_ok else "corrupt")

    def failed(self, envelope: Envelope, received_ns: int) -> None:
        """Note that the handler ran on `envelope` and is about to raise: a failed attempt."""
        self._append(envelope, received_ns, FAILED)

    def started(self, envelope: Envelope, received_ns: int) -> None:
        """Note that work on `envelope` began; it counts as received only once `write` runs."""
        self._append(envelope, received_ns, STARTED)

    def _append(self, envelope: Envelope, received_ns: int, status: str) -> None:
        line = f"{envelope.run_id} {envelope.seq} {envelope.sent_ns} {received_ns} {status}\n"
        os.write(self._fd, line.encode())
