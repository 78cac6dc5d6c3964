"""The contract, checked against every pair on its real broker.

Producers send opaque bytes; the consumer is the pair's own OS process; every message reaches the
shared handler intact; the broker's own count agrees with what was sent and taken.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from queuebench import adapters
from queuebench.engine.consumer import ConsumerProcess
from queuebench.engine.ledger import LedgerReader, tally
from queuebench.worker.envelope import wrap
from tests.pairs import pair_params

# Every byte value, so a library that mangles binary data is caught.
BINARY = bytes(range(256)) * 4 + os.urandom(1024)


@pytest.fixture(params=pair_params())
def adapter(request):
    adapter = adapters.create(request.param, queue=f"qb-contract-{uuid.uuid4().hex[:8]}")
    adapter.prepare()
    yield adapter
    adapter.cleanup()


def send(adapter, run_id, payloads) -> None:
    producer = adapter.producer()
    try:
        for seq, payload in enumerate(payloads):
            producer.send(wrap(run_id, seq, payload), key=str(seq))
        producer.flush()
    finally:
        producer.close()


def test_declares_its_delivery_data(adapter):
    """Capabilities, a size limit with its error text, and a default variant are declared."""
    info = adapter.describe()
    assert all(info["capabilities"].values())
    assert info["size_limit"]["error"]
    assert adapter.variants[0].name == "default"


def test_backlog_counts_what_was_sent_and_prepare_empties_it(adapter):
    """The broker reports the messages waiting; prepare leaves the queue empty again."""
    send(adapter, uuid.uuid4(), [b"a", b"b", b"c"])
    assert adapter.backlog() is not None, "every pair here can tell what its broker holds"
    deadline = time.monotonic() + 10
    while adapter.backlog().waiting < 3 and time.monotonic() < deadline:
        time.sleep(0.1)  # some brokers count asynchronously
    assert adapter.backlog().waiting == 3
    adapter.prepare()
    assert adapter.backlog().waiting == 0


def test_consumer_process_delivers_every_message_intact(adapter, tmp_path):
    """The pair's own consumer process hands every message, bytes intact, to the handler once."""
    run_id = uuid.uuid4()
    payloads = [BINARY, b"", b"{}", *[os.urandom(100) for _ in range(5)]]
    send(adapter, run_id, payloads)
    consumer = ConsumerProcess(adapter, ledger_dir=tmp_path / "ledger", work_ms=0,
                               log_path=tmp_path / "consumer.log")
    reader = LedgerReader(tmp_path / "ledger", str(run_id))
    consumer.start()
    try:
        deadline = time.monotonic() + 90
        while len(reader.poll()) < len(payloads) and time.monotonic() < deadline:
            consumer.check_alive()
            time.sleep(0.1)
        consumer.stop()
    finally:
        consumer.ensure_stopped()
    result = tally(reader.poll(), len(payloads))
    assert result.lost == (), consumer.log_tail(20)
    assert result.duplicate_deliveries == 0
    assert result.corrupt == 0
    backlog = adapter.backlog()
    assert backlog is None or backlog.waiting == 0


def test_graceful_stop_ends_the_consumer_promptly(adapter, tmp_path):
    """The library's documented shutdown signal stops an idle consumer within 30 s."""
    consumer = ConsumerProcess(adapter, ledger_dir=tmp_path, work_ms=0,
                               log_path=tmp_path / "consumer.log")
    consumer.start()
    time.sleep(2)
    consumer.check_alive()
    assert consumer.stop() < 30
    assert not consumer.running
