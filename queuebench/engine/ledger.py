"""The receipt ledger as the engine reads it: what every consumer process processed.

Each consumer process appends its receipts to a file of its own (`queuebench.worker.receipts`).
The engine merges the files: expected minus received is lost, received more than once is
duplicated, and the send and receive times give end-to-end latency.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from queuebench.worker.receipts import STARTED


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
