"""The engine: one sequence of phases for every workload, as OpenMessaging Benchmark's
WorkloadGenerator runs them.

prepare the queue -> start the consumers first and warm them up (or leave them off while the
queue fills, and start them after a wait) -> produce by the rate shape, each message stamped
with its intended send time and encoded inside the timed loop -> stop or kill the consumers at
their trigger, aimed halfway through the task in hand, and restart them -> drain until every
message is accounted for -> check the broker -> figures, computed here and nowhere else.

Seed 003's reliability and throughput tests are two workload files over these phases.
"""

from __future__ import annotations

import math
import time
import uuid

from queuebench.engine.common import (
    Experiment,
    broker_check,
    check_tally,
    delivery_figures,
    throughput_figures,
)
from queuebench.engine.ledger import LedgerReader
from queuebench.errors import ConsumerFailed
from queuebench.payloads.codecs import encode
from queuebench.worker.envelope import wrap

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


def warm_up(experiment: Experiment, deadline: float) -> float:
    """Start the consumers and wait until one processed a message; return the seconds taken."""
    warm_up_id = uuid.uuid4()
    warm_up_ledger = LedgerReader(experiment.ledger.ledger_dir, str(warm_up_id))
    started = time.monotonic()
    experiment.consumers.start()
    producer = experiment.adapter.producer()
    try:
        producer.send(wrap(warm_up_id, 0, encode(experiment.records[0], experiment.cell.format)))
        producer.flush()
    finally:
        producer.close()
    if not experiment.wait_for(lambda: bool(warm_up_ledger.poll()), deadline):
        raise ConsumerFailed(f"{experiment.adapter.scheme} consumer processed no warm-up message "
                             f"within {experiment.config.deadline_sec:.0f} s; last log lines: "
                             f"{experiment.consumers.log_tail()}")
    return time.monotonic() - started


def stop_midway(experiment: Experiment, deadline: float) -> dict[str, object] | None:
    """The consumer fault: once `at_received` of the messages arrived, stop or kill every
    consumer (mid-task if asked) and start them again. None if the trigger never came."""
    cell = experiment.cell
    trigger = max(1, math.ceil(cell.messages * cell.at_received))
    if not experiment.wait_for(lambda: experiment.distinct_received() >= trigger, deadline):
        return None
    stopped_after = experiment.distinct_received()
    mid_task = cell.mid_task and sleep_until_mid_task(experiment.ledger, cell.work_ms)
    stop_sec = None
    if cell.stop == "kill":
        experiment.consumers.kill()
    else:
        stop_sec = experiment.consumers.stop()
    experiment.consumers.start()
    return {"stopped_after": stopped_after, "stopped_mid_task": mid_task,
            "graceful_stop_sec": round(stop_sec, 3) if stop_sec is not None else None}


def run(experiment: Experiment) -> dict[str, object]:
    cell, consumers = experiment.cell, experiment.consumers
    started = time.monotonic()
    deadline = started + experiment.config.deadline_sec
    experiment.adapter.prepare()
    startup_sec, stop = None, None
    try:
        if cell.start == "before":
            startup_sec = warm_up(experiment, deadline)
        first_send_ns, produce_sec = experiment.produce()
        consumers_from_ns = first_send_ns
        if cell.start == "after":
            time.sleep(cell.wait_sec)
            consumers_from_ns = time.time_ns()
            consumers.start()
        outcome = None
        if cell.stop:
            stop = stop_midway(experiment, deadline)
            outcome = None if stop else "deadline"
        outcome = outcome or experiment.wait_settled(deadline)
        consumers.stop()
    finally:
        consumers.ensure_stopped()
    return figures(experiment, outcome=outcome, started=started, produce_sec=produce_sec,
                   consumers_from_ns=consumers_from_ns, startup_sec=startup_sec, stop=stop)


def figures(experiment: Experiment, *, outcome: str, started: float, produce_sec: float,
            consumers_from_ns: int, startup_sec: float | None,
            stop: dict[str, object] | None) -> dict[str, object]:
    """Every figure of a repeat, named as the seed names them, plus the drain rate."""
    receipts, result = check_tally(experiment)
    times = [r.received_ns for r in receipts]
    first_ns, last_ns = min(times, default=None), max(times, default=None)
    if startup_sec is None and first_ns:  # started after producing: until its first receipt
        startup_sec = (first_ns - consumers_from_ns) / 1e9
    consume_sec = (last_ns - consumers_from_ns) / 1e9 if last_ns else 0.0
    drain_sec = (last_ns - first_ns) / 1e9 if last_ns else 0.0
    produced = throughput_figures(result.expected, experiment.payload_bytes, produce_sec)
    consumed = throughput_figures(result.received, experiment.received_bytes(receipts), consume_sec)
    offsets = experiment.cell.intended_offsets_ns()
    m = {
        **delivery_figures(receipts, result),
        "outcome": outcome,
        "duration_sec": round(time.monotonic() - started, 3),
        "payload_bytes": experiment.payload_bytes // max(1, result.expected),
        "time_to_produce_sec": round(produce_sec, 3),
        "produce_throughput": produced["msg_s"],
        "produce_mb_s": produced["mb_s"],
        "intended_rate": round((len(offsets) - 1) / (offsets[-1] / 1e9), 1)
        if offsets and offsets[-1] else None,
        "consumer_startup_sec": round(startup_sec, 3) if startup_sec is not None else None,
        "time_to_consume_sec": round(consume_sec, 3) if consume_sec else None,
        "consume_throughput": consumed["msg_s"],
        "consume_mb_s": consumed["mb_s"],
        # The rate a running fleet drains a backlog at: first to last receipt.
        "drain_throughput": throughput_figures(result.received - 1, 0, drain_sec)["msg_s"]
        if result.received > 1 else None,
        "consumer_processes": experiment.cell.processes,
        "consumer_starts": experiment.consumers.starts,
        "broker_check": broker_check(experiment.adapter.backlog(), result),
    }
    if experiment.cell.stop:
        m.update(stop or {"stopped_after": None, "stopped_mid_task": False,
                          "graceful_stop_sec": None})
    return m
