"""The seed's reliability test: does a stop or a crash of the consumer lose or repeat messages?

Produce N messages with the consumer off; wait; start the consumer; when about half are
processed, halfway through the task then in hand, stop it gracefully (the library's documented
shutdown signal) or SIGKILL it; restart it; wait until every message is accounted for or a
deadline passes. The ledger counts what was lost and duplicated, and the broker's own count is
checked against it.
"""

from __future__ import annotations

import time

from queuebench.engine.common import (
    Experiment,
    broker_check,
    check_tally,
    delivery_figures,
    throughput_figures,
)
from queuebench.engine.ledger import LedgerReader

STOP_MODES = ("graceful", "kill")
MID_TASK_POLL_SEC = 0.001
# A consumer that starts no task for this long is idle, not between two tasks: stop it as it is.
MID_TASK_GIVE_UP_SEC = 2.0


def sleep_until_mid_task(ledger: LedgerReader, work_ms: float) -> bool:
    """Sleep until halfway through a task in hand, so a stop lands mid-task; False if none came.

    A receipt is written when a task ends, so when the 50 ms progress poll sees one, a 20 ms
    task may be over and the next not yet begun. Handlers therefore also note when work starts:
    aim at the midpoint of the newest start or, if that has passed, watch closely for the next.
    """
    half_work_ns = work_ms * 500_000
    give_up = time.monotonic() + MID_TASK_GIVE_UP_SEC
    while work_ms > 0 and time.monotonic() < give_up:
        ledger.poll()
        wait_ns = ledger.last_start_ns + half_work_ns - time.time_ns()
        if wait_ns > 0:
            time.sleep(wait_ns / 1e9)
            return True
        time.sleep(MID_TASK_POLL_SEC)
    return False


def run(experiment: Experiment) -> dict[str, object]:
    config = experiment.config
    started = time.monotonic()
    experiment.adapter.prepare()
    _, produce_sec = experiment.produce()
    time.sleep(config.wait_sec or 0)

    deadline = time.monotonic() + config.deadline_sec
    consumer = experiment.consumer
    start_ns = time.time_ns()
    consumer.start()
    try:
        half = max(1, len(experiment.payloads) // 2)
        reached_half = experiment.wait_for(lambda: experiment.distinct_received() >= half, deadline)
        stopped_after = experiment.distinct_received()
        stop_sec, outcome, mid_task = None, "deadline", False
        if reached_half:
            mid_task = sleep_until_mid_task(experiment.ledger, config.work_ms)
            if config.stop == "kill":
                consumer.kill()
            else:
                stop_sec = consumer.stop()
            consumer.start()
            outcome = experiment.wait_settled(deadline)
        consumer.stop()
    finally:
        consumer.ensure_stopped()

    receipts, result = check_tally(experiment)
    first_ns = min((r.received_ns for r in receipts), default=None)
    last_ns = max((r.received_ns for r in receipts), default=None)
    consume_sec = (last_ns - start_ns) / 1e9 if last_ns else None
    return {
        **delivery_figures(receipts, result),
        "outcome": outcome,
        "duration_sec": round(time.monotonic() - started, 3),
        "payload_bytes": experiment.payload_bytes // max(1, len(experiment.payloads)),
        "time_to_produce_sec": round(produce_sec, 3),
        "produce_throughput": throughput_figures(result.expected, experiment.payload_bytes,
                                                 produce_sec)["msg_s"],
        "consumer_startup_sec": round((first_ns - start_ns) / 1e9, 3) if first_ns else None,
        "time_to_consume_sec": round(consume_sec, 3) if consume_sec else None,
        "stopped_after": stopped_after,
        "stopped_mid_task": mid_task,
        "graceful_stop_sec": round(stop_sec, 3) if stop_sec is not None else None,
        "consumer_starts": consumer.starts,
        "broker_check": broker_check(experiment.adapter.backlog(), result),
    }
