"""Scaffolding the pair-specific test files share: a bounded wait, and one run of a pair.

A `PairRun` holds what a test drives through a pair's real consumer: the messages of one run id,
the consumer process started the way the runner starts it, and the ledger its handler writes.
What only one pair's tests need stays in that file, as a subclass.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from queuebench.adapters.base import Adapter
from queuebench.engine.consumer import ConsumerProcess
from queuebench.engine.ledger import LedgerReader
from queuebench.worker.envelope import wrap

WAIT_SEC = 30.0  # default bound on every wait


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT_SEC,
             poll: float = 0.01, detail: Callable[[], object] | None = None) -> None:
    """Return once `condition()` is true; fail the test if it is not within `timeout` seconds,
    saying what `detail()` tells of the state it was left in."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}"
                        + (f"; {detail()}" if detail else ""))
        time.sleep(poll)


def discard(adapter: Adapter) -> None:
    """The test's queue deleted from the broker and the adapter's connections closed: queues of
    random names pile up otherwise (Kafka topics, RabbitMQ's durable queues), and a kafka-python
    client left open goes on refreshing metadata into later tests."""
    try:
        adapter.delete_queue()
    finally:
        adapter.cleanup()


def send_all(adapter: Adapter, payloads: Iterable[bytes]) -> None:
    """Send `payloads` as they are, through one producer that is flushed and closed."""
    producer = adapter.producer()
    try:
        for payload in payloads:
            producer.send(payload)
        producer.flush()
    finally:
        producer.close()


class PairRun:
    """Messages of one run id sent through a pair, its consumer process and its ledger."""

    def __init__(self, adapter: Adapter, folder: Path, *, work_ms: float) -> None:
        self.adapter = adapter
        self.run_id = uuid.uuid4()
        self.ledger = LedgerReader(folder / "ledger", str(self.run_id))
        self.consumer = ConsumerProcess(adapter, ledger_dir=folder / "ledger", work_ms=work_ms,
                                        log_path=folder / "consumer.log")
        self.sent = 0

    def send(self, count: int, payload: bytes = b"stock update") -> None:
        """Send `count` wrapped messages, numbered on from the last one sent."""
        producer = self.adapter.producer()
        try:
            for _ in range(count):
                producer.send(wrap(self.run_id, self.sent, payload), key=str(self.sent))
                self.sent += 1
            producer.flush()
        finally:
            producer.close()

    def received(self) -> int:
        """Receipts so far, duplicates counted."""
        return len(self.ledger.poll())

    def seqs(self) -> list[int]:
        """Sequence numbers of the receipts so far, sorted, duplicates kept."""
        return sorted(r.seq for r in self.ledger.poll())

    def wait_received(self, count: int, timeout: float = WAIT_SEC) -> None:
        wait_for(lambda: self.received() >= count,
                 f"{count} receipts; consumer log: {self.consumer.log_tail()}", timeout)

    def close(self) -> None:
        self.consumer.ensure_stopped()
