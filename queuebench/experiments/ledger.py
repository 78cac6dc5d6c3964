"""The receipt ledger: what every consumer process processed, and what that means.

Every message is an envelope: a fixed header (run id, sequence number, the producer's send time
in nanoseconds, the payload length and an 8-byte BLAKE2b digest of the payload) followed by the
payload: a payload that arrives with other bytes, even at the same length, is marked corrupt.
Each consumer process appends one line per processed message to its own file with a single
unbuffered `os.write`, so a SIGKILL loses nothing already written. The runner merges the files:
expected minus received is lost, received more than once is duplicated, and the send and receive
times give end-to-end latency. When messages take work, a line also notes when work on each
began, so the runner can aim a stop at the task in hand.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

HEADER = struct.Struct(">4s16sQQI8s")  # magic, run id, seq, sent ns, payload length, digest
MAGIC = b"QBv2"
DIGEST_BYTES = 8
STARTED = "started"  # the status of a line that notes work beginning, not a receipt


@dataclass(frozen=True)
class Envelope:
    run_id: str
    seq: int
    sent_ns: int
    payload_ok: bool  # the payload arrived with the length and the bytes it was sent with


def payload_digest(payload: bytes | memoryview) -> bytes:
    """A fast 8-byte digest: it sits in the timed path of both producer and consumer."""
    return hashlib.blake2b(payload, digest_size=DIGEST_BYTES).digest()


def wrap(run_id: uuid.UUID, seq: int, payload: bytes) -> bytes:
    """Frame `payload` for sending now: the send time is stamped here, after the hashing."""
    digest = payload_digest(payload)
    return HEADER.pack(MAGIC, run_id.bytes, seq, time.time_ns(), len(payload), digest) + payload


def unwrap(message: bytes) -> Envelope:
    magic, run_id, seq, sent_ns, length, digest = HEADER.unpack_from(message)
    if magic != MAGIC:
        raise ValueError("not a queuebench message (bad magic)")
    payload = memoryview(message)[HEADER.size:]  # no copy of a large payload
    ok = len(payload) == length and payload_digest(payload) == digest
    return Envelope(str(uuid.UUID(bytes=run_id)), seq, sent_ns, payload_ok=ok)


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

    def started(self, envelope: Envelope, received_ns: int) -> None:
        """Note that work on `envelope` began; it counts as received only once `write` runs."""
        self._append(envelope, received_ns, STARTED)

    def _append(self, envelope: Envelope, received_ns: int, status: str) -> None:
        line = f"{envelope.run_id} {envelope.seq} {envelope.sent_ns} {received_ns} {status}\n"
        os.write(self._fd, line.encode())


@dataclass(frozen=True)
class Receipt:
    seq: int
    sent_ns: int
    received_ns: int
    ok: bool


class LedgerReader:
    """Follows every consumer file of a ledger folder, reading only what was appended since."""

    def __init__(self, ledger_dir: Path, run_id: str) -> None:
        self.ledger_dir = ledger_dir
        self.run_id = run_id
        self.receipts: list[Receipt] = []
        self.last_start_ns = 0  # when the newest noted work began
        self._offsets: dict[Path, int] = {}

    def poll(self) -> list[Receipt]:
        """Read new complete lines; a line still being written is left for the next poll."""
        for path in sorted(self.ledger_dir.glob("receipts-*.log")):
            with path.open("rb") as f:
                f.seek(self._offsets.get(path, 0))
                chunk = f.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offsets[path] = self._offsets.get(path, 0) + len(complete)
            for line in complete.decode().splitlines():
                parts = line.split()
                if len(parts) != 5 or parts[0] != self.run_id:
                    continue
                if parts[4] == STARTED:
                    self.last_start_ns = max(self.last_start_ns, int(parts[3]))
                else:
                    self.receipts.append(
                        Receipt(int(parts[1]), int(parts[2]), int(parts[3]), parts[4] == "ok"))
        return self.receipts


@dataclass(frozen=True)
class Tally:
    """The ledger's verdict over messages 0..expected-1."""

    expected: int
    received: int  # distinct sequence numbers seen
    lost: tuple[int, ...]
    duplicates: tuple[int, ...]  # sequence numbers seen more than once (each listed once)
    duplicate_deliveries: int  # extra deliveries beyond the first
    corrupt: int
    unexpected: int  # receipts with a sequence number that was never sent

    @property
    def loss_pct(self) -> float:
        return 100.0 * len(self.lost) / self.expected if self.expected else 0.0


def tally(receipts: list[Receipt], expected: int) -> Tally:
    counts = Counter(r.seq for r in receipts)
    sent = range(expected)
    return Tally(
        expected=expected,
        received=sum(1 for seq in sent if counts[seq]),
        lost=tuple(seq for seq in sent if not counts[seq]),
        duplicates=tuple(sorted(seq for seq, n in counts.items() if n > 1 and seq < expected)),
        duplicate_deliveries=sum(n - 1 for seq, n in counts.items() if n > 1 and seq < expected),
        corrupt=sum(1 for r in receipts if not r.ok),
        unexpected=sum(n for seq, n in counts.items() if seq >= expected),
    )
