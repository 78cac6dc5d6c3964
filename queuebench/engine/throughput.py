"""The seed's throughput test: N messages produced while the consumer runs.

The consumer is started first and proves it is ready by processing a warm-up message of another
run id (that time is its start-up). Then every message is sent, timed; the consume time runs from
the first send to the last receipt. Latency is each message's send-to-receive time.
"""

from __future__ import annotations

import time
import uuid

from queuebench.engine.common import (
    Experiment,
    broker_check,
    check_tally,
    delivery_figures,
    received_payload_bytes,
    throughput_figures,
)
from queuebench.engine.ledger import LedgerReader
from queuebench.errors import ConsumerFailed
from queuebench.worker.envelope import wrap


def _warm_up(experiment: Experiment, deadline: float) -> float:
    """Start the consumer and wait for it to process one message; return seconds taken."""
    warm_up_id = uuid.uuid4()
    warm_up_ledger = LedgerReader(experiment.ledger.ledger_dir, str(warm_up_id))
    started = time.monotonic()
    experiment.consumer.start()
    producer = experiment.adapter.producer()
    try:
        producer.send(wrap(warm_up_id, 0, b""))
        producer.flush()
    finally:
        producer.close()
    if not experiment.wait_for(lambda: bool(warm_up_ledger.poll()), deadline):
        raise ConsumerFailed(f"{experiment.adapter.scheme} consumer processed no warm-up message "
                             f"within {experiment.config.deadline_sec:.0f} s; last log lines: "
                             f"{experiment.consumer.log_tail()}")
    return time.monotonic() - started


def run(experiment: Experiment) -> dict[str, object]:
    started = time.monotonic()
    deadline = started + experiment.config.deadline_sec
    experiment.adapter.prepare()
    try:
        startup_sec = _warm_up(experiment, deadline)
        first_send_ns, produce_sec = experiment.produce()
        outcome = experiment.wait_settled(deadline)
        experiment.consumer.stop()
    finally:
        experiment.consumer.ensure_stopped()

    receipts, result = check_tally(experiment)
    last_ns = max((r.received_ns for r in receipts), default=None)
    consume_sec = (last_ns - first_send_ns) / 1e9 if last_ns else 0.0
    produced = throughput_figures(result.expected, experiment.payload_bytes, produce_sec)
    # Consumed MB/s counts the bytes that arrived, not all that were sent.
    arrived_bytes = received_payload_bytes(experiment.payloads, receipts)
    consumed = throughput_figures(result.received, arrived_bytes, consume_sec)
    return {
        **delivery_figures(receipts, result),
        "outcome": outcome,
        "duration_sec": round(time.monotonic() - started, 3),
        "payload_bytes": experiment.payload_bytes // max(1, len(experiment.payloads)),
        "consumer_startup_sec": round(startup_sec, 3),
        "time_to_produce_sec": round(produce_sec, 3),
        "produce_throughput": produced["msg_s"],
        "produce_mb_s": produced["mb_s"],
        "time_to_consume_sec": round(consume_sec, 3) if consume_sec else None,
        "consume_throughput": consumed["msg_s"],
        "consume_mb_s": consumed["mb_s"],
        "broker_check": broker_check(experiment.adapter.backlog(), result),
    }
