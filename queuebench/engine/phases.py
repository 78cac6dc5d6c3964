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

import bisect
import contextlib
import itertools
import math
import time
import uuid
from array import array
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from queuebench.adapters.base import Adapter
from queuebench.engine.common import (
    Experiment,
    broker_check,
    check_tally,
    delivery_figures,
    throughput_figures,
)
from queuebench.engine.environment import host_load, usage_now
from queuebench.engine.injector import Injector, make_fault
from queuebench.engine.ledger import LedgerReader, Receipts
from queuebench.engine.metrics import latency_ms
from queuebench.engine.producers import error_text, producer_figures
from queuebench.engine.workload import Cell
from queuebench.errors import ConsumerFailed
from queuebench.faults import service_of
from queuebench.faults.base import HealOrder
from queuebench.faults.healer import Healer
from queuebench.payloads.builder import mix_kind
from queuebench.payloads.codecs import encode
from queuebench.services import durability
from queuebench.services.catalog import HOST, SERVICES
from queuebench.worker.envelope import wrap

READY_GRACE_SEC = 5.0  # after the first consumer proved ready, how long the others may take
READY_ROUND_SEC = 0.2  # how often more warm-up messages go out while some wait for theirs
# A group's description lists every member: asked twice a second, not twenty times.
GROUP_POLL_SEC = 0.5
MID_TASK_POLL_SEC = 0.001
# A consumer that starts no task for this long is idle, not between two tasks: stop it as it is.
MID_TASK_GIVE_UP_SEC = 2.0
NEVER = 2**63 - 1  # the first receipt of a message not received


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
    """Start the consumers and wait until each proved ready by processing a warm-up message of
    another run id, and until the broker handed each its share of the queue (a Kafka group
    settled); return the seconds until then: seed 000's barrier.

    One warm-up message per consumer process, and more while some wait for theirs (one may take
    several): a process whose receipts file holds one is ready. Where some never get one (one
    Kafka partition feeds one group member) the wait ends READY_GRACE_SEC after the first.
    """
    consumers, fmt = experiment.consumers, experiment.cell.format
    warm_up_id = str(uuid.uuid4())
    started = time.monotonic()
    consumers.start()
    sessions = consumers.receipt_paths()
    body = encode(experiment.records[0], fmt)
    producer = experiment.data_adapter.producer()

    def ready() -> set[Path]:
        return {path for path in sessions if warm_up_id in _text(path)}

    def send_round() -> None:
        for seq in range(len(sessions)):
            producer.send(wrap(uuid.UUID(warm_up_id), seq, body))
        producer.flush()

    try:
        send_round()
        if not experiment.wait_for(lambda: bool(ready()), deadline):
            raise ConsumerFailed(
                f"{experiment.adapter.scheme} consumer processed no warm-up message within "
                f"{experiment.config.deadline_sec:.0f} s; last log lines: {consumers.log_tail()}")
        startup_sec = time.monotonic() - started
        experiment.note("first consumer ready")
        grace = min(deadline, time.monotonic() + READY_GRACE_SEC)
        while len(ready()) < len(sessions) and time.monotonic() < grace:
            send_round()
            experiment.wait_for(lambda: len(ready()) == len(sessions),
                                min(grace, time.monotonic() + READY_ROUND_SEC))
    finally:
        producer.close()
    experiment.consumers_ready = len(ready())
    # Processes, not consumers: a Kafka group of 900 members in 9 processes may see warm-up
    # messages reach only some processes' partitions; the group's settling below is its barrier.
    experiment.note(f"{experiment.consumers_ready} of {len(sessions)} consumer processes had a "
                    "warm-up message")
    members = experiment.cell.processes * experiment.cell.concurrency
    if unsettled := experiment.adapter.unsettled_group(members):
        def settled() -> bool:
            nonlocal unsettled
            unsettled = experiment.adapter.unsettled_group(members)
            return unsettled is None

        if not experiment.wait_for(settled, deadline, every_sec=GROUP_POLL_SEC):
            raise ConsumerFailed(f"the consumer group of {members} members did not settle "
                                 f"within {experiment.config.deadline_sec:.0f} s: {unsettled}")
        startup_sec = time.monotonic() - started
        experiment.note(f"consumer group settled: {members} members")
    return startup_sec


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


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
    experiment.note(f"consumers {'killed' if cell.stop == 'kill' else 'asked to stop'}"
                    + (f" on node {cell.stop_node}" if cell.stop_node else "")
                    + f" after {stopped_after} received" + (" (mid-task)" if mid_task else ""))
    if cell.stop == "kill":
        experiment.consumers.kill(node=cell.stop_node)
    else:
        stop_sec = experiment.consumers.stop(node=cell.stop_node)
        experiment.note("consumers stopped")
    experiment.consumers.start()
    experiment.note("consumers restarted")
    return {"stopped_after": stopped_after, "stopped_mid_task": mid_task,
            "graceful_stop_sec": round(stop_sec, 3) if stop_sec is not None else None}


def run(experiment: Experiment) -> dict[str, object]:
    cell, consumers = experiment.cell, experiment.consumers
    started = time.monotonic()
    deadline = started + experiment.config.deadline_sec
    usage = usage_now()
    service_name = service_of(experiment.adapter.scheme) if cell.durability else None
    healer = Healer(experiment.folder / "heal.json", experiment.folder / "healer.log",
                    HealOrder(durability=[service_name] if service_name else [])) \
        if cell.fault or service_name else None
    startup_sec, stop, injector = None, None, None
    try:
        if service_name:
            durability.apply(service_name, cell.durability)
        broker_durability = durability_in_force(experiment.adapter)
        experiment.adapter.prepare()
        if cell.start == "before":
            startup_sec = warm_up(experiment, deadline)
            deadline += startup_sec  # as the seed's barrier: the pair's clock starts after it
        if cell.fault:
            injector = start_injector(experiment, healer)
        experiment.note("producing")
        produced = experiment.produce()
        experiment.note("produced")
        first_send_ns, produce_sec = produced.first_ns, produced.seconds
        consumers_from_ns = first_send_ns
        if cell.start == "after":
            time.sleep(cell.wait_sec)
            deadline += cell.wait_sec  # the deadline is for the pair, not for a wait we chose
            consumers_from_ns = time.time_ns()
            consumers.start()
            experiment.note("consumers started")
        outcome = None
        if cell.stop:
            stop = stop_midway(experiment, deadline)
            outcome = None if stop else "deadline"
        outcome = outcome or experiment.wait_settled(deadline)
        experiment.note(f"settled: {outcome}")
        if injector:
            fault_figures = injector.finish()
            experiment.fault_span = injector.span
        consumers.sample_memory()  # a run shorter than the sampling period has one sample
        with contextlib.suppress(RuntimeError):  # a member stopped while we looked
            # Once, not sampled: reading 900 processes' page maps is seconds of CPU.
            experiment.consumer_pss_bytes = consumers.memory_bytes(proportional=True)
        try:
            consumers.stop()
        except ConsumerFailed as exc:
            # Everything was measured: a worker that had to be killed at the end is noted, not
            # a failed repeat. (RQ swallows a SIGTERM that lands while it writes a log line:
            # logging's handleError catches the StopRequested its signal handler raises.)
            experiment.note(f"final stop: {exc}")
    finally:
        if injector:
            injector.cancelled.set()  # heals what is still in force
            injector.join()
        consumers.ensure_stopped()
        if service_name:
            reset_durability(service_name, healer, experiment.note)
        if healer:
            healer.close()
    m = figures(experiment, outcome=outcome, started=started, produce_sec=produce_sec,
                consumers_from_ns=consumers_from_ns, startup_sec=startup_sec, stop=stop)
    if injector:
        m["fault"] = {**fault_figures, **m.pop("fault_recovery", {}),
                      "consumer_exits": experiment.consumer_exits}
    if broker_durability:
        m["broker_durability"] = broker_durability
    # The machine as it was meanwhile: a figure taken on a busy host says so.
    return {**m, "host": host_load(usage), "timeline": experiment.timeline}


def durability_in_force(adapter: Adapter) -> dict[str, object] | None:
    """The durability mode of the pair's broker, read from the server (None: embedded)."""
    service_name = service_of(adapter.scheme)
    if service_name is None:
        return None
    address = urlsplit(adapter.url)
    if address.hostname not in (HOST, "localhost") or address.port != SERVICES[service_name].port:
        return {"mode": "unknown", "settings": {}, "words": "a broker queuebench did not start: "
                "its durability is its own configuration"}
    try:
        return durability.in_force(service_name).to_dict()
    except Exception as exc:  # a managed Redis refuses CONFIG GET: the run goes on without it
        return {"mode": "unknown", "settings": {},
                "words": f"could not read it from {service_name}: {error_text(exc)}"}


def reset_durability(service_name: str, healer: Healer, note: Callable[[str], None]) -> None:
    """The broker back in its own durability mode; if that fails, the healer tries again."""
    try:
        durability.reset(service_name)
    except Exception as exc:
        note(f"durability reset left to the healer: {error_text(exc)}")
    else:
        healer.standing = HealOrder()


def start_injector(experiment: Experiment, healer: Healer) -> Injector:
    """The cell's fault, injected from a thread of its own at its trigger (faults/)."""
    fault = experiment.cell.fault
    injector = Injector(
        fault, lambda: make_fault(fault, experiment.adapter, experiment.consumers),
        ledger_dir=experiment.folder / "ledger", run_id=str(experiment.run_id),
        messages=experiment.cell.messages, healer=healer, in_force=experiment.fault_in_force,
        note=experiment.note)
    injector.start()
    return injector


def figures(experiment: Experiment, *, outcome: str, started: float, produce_sec: float,
            consumers_from_ns: int, startup_sec: float | None,
            stop: dict[str, object] | None) -> dict[str, object]:
    """Every figure of a repeat, named as the seed names them, plus the drain rate."""
    receipts, result = check_tally(experiment)
    first_ns = min(receipts.received_ns, default=None)
    last_ns = max(receipts.received_ns, default=None)
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
        # The producer mode and what the broker acknowledged: lost_acked of the lost messages
        # had been acknowledged; send_failed were never acknowledged (so never sent).
        **producer_figures(experiment.produced, mode=experiment.cell.producer_mode,
                           count=experiment.cell.producers, in_flight=experiment.cell.in_flight,
                           lost_seqs=result.lost),
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
        "consumers_ready": experiment.consumers_ready,
        "series": per_second(receipts, consumers_from_ns, experiment.cell.messages),
        "consumer_starts": experiment.consumers.starts,
        "consumer_nodes": experiment.consumers.placement(),
        "producer_nodes": experiment.producer_nodes,
        # The consumer processes' trees at their peak, and per unit of concurrency.
        **memory_figures(experiment.consumers.peak_rss_bytes, experiment.consumer_pss_bytes,
                         experiment.cell.processes * experiment.cell.concurrency),
        "broker_check": broker_check(experiment.adapter.backlog(), result),
        # Where the library put the messages whose handler failed, where its broker says so
        # (after the consumers stopped: a running worker holds its retries unacked).
        "failure_outcome": experiment.adapter.failure_outcome()
        if experiment.cell.fail_fraction else None,
    }
    m.update(shape_figures(experiment, receipts, m["latency_ms"]))
    if experiment.cell.stop:
        m.update(stop or {"stopped_after": None, "stopped_mid_task": False,
                          "graceful_stop_sec": None})
    return m


def first_receipts(receipts: Receipts, messages: int) -> tuple[array, array]:
    """By sequence number 0..messages-1: when each message was first received (NEVER: not
    received) and when it was meant to be sent (0: not received). Arrays: a million fit."""
    first_received = array("q", [NEVER]) * messages
    sent_at = array("q", bytes(8 * messages))
    for seq, sent_ns, received_ns in zip(receipts.seq, receipts.sent_ns, receipts.received_ns,
                                         strict=True):
        if 0 <= seq < messages and received_ns < first_received[seq]:
            first_received[seq], sent_at[seq] = received_ns, sent_ns
    return first_received, sent_at


def memory_figures(peak_rss_bytes: int, pss_bytes: int, units: int
                   ) -> dict[str, float | None]:
    """RSS as `ps` shows it, peak while the run ran: a page shared by forked children counts in
    each, so 900 Celery children "hold" 55 GB on a 24 GB machine. PSS, once the work is done,
    splits each shared page between its sharers: what the consumers really cost."""
    def mb(count: int, per: int = 1) -> float | None:
        return round(count / 1e6 / per, 2) if count else None

    return {"consumer_rss_mb": mb(peak_rss_bytes), "consumer_rss_mb_per_unit":
            mb(peak_rss_bytes, units), "consumer_pss_mb": mb(pss_bytes),
            "consumer_pss_mb_per_unit": mb(pss_bytes, units)}


def per_second(receipts: Receipts, origin_ns: int, messages: int) -> dict[str, list[int]]:
    """Second by second from `origin_ns`, of messages 0..messages-1 received (each once, at its
    first receipt): how many were meant to be sent, how many arrived, and how many waited
    between."""
    first_received, sent_at = first_receipts(receipts, messages)
    arrived = [seq for seq, received_ns in enumerate(first_received) if received_ns != NEVER]
    if not arrived:
        return {"sent": [], "received": [], "backlog": []}
    start = min(origin_ns, min(sent_at[seq] for seq in arrived))
    seconds = int((max(first_received[seq] for seq in arrived) - start) // 1e9) + 1
    sent, received = [0] * seconds, [0] * seconds
    for seq in arrived:
        sent[int((sent_at[seq] - start) // 1e9)] += 1
        received[int((first_received[seq] - start) // 1e9)] += 1
    backlog = list(itertools.accumulate(s - r for s, r in zip(sent, received, strict=True)))
    return {"sent": sent, "received": received, "backlog": backlog}


def backlog_steps(send_ns: Sequence[int], first_received: Sequence[int]
                  ) -> list[tuple[int, int]]:
    """(time, messages sent and not yet received) after each send and each first receipt, in
    time order: the backlog as the intended send times and the receipts tell it, exactly."""
    events = sorted([(t, 1) for t in send_ns]
                    + [(t, -1) for t in first_received if t != NEVER])
    depth, steps = 0, []
    for t, change in events:
        depth += change
        steps.append((t, depth))
    return steps


def fault_backlog(send_ns: Sequence[int], first_received: Sequence[int], injected_ns: int,
                  healed_ns: int) -> dict[str, object]:
    """The backlog when the fault was injected (every message sent and not received by then,
    the ones the fault then lost too), and how long after the heal it was back at that level or
    below, counted over the messages that arrived: one lost is counted as such, not waited for."""
    before = backlog_at(backlog_steps(send_ns, first_received), injected_ns)
    arrived = [seq for seq, received in enumerate(first_received) if received != NEVER]
    steps = backlog_steps([send_ns[seq] for seq in arrived],
                          [first_received[seq] for seq in arrived])
    back = healed_ns if backlog_at(steps, healed_ns) <= before else next(
        (t for t, depth in steps if t >= healed_ns and depth <= before), None)
    return {"backlog_at_injection": before,
            "backlog_recovered_after_sec": None if back is None
            else round((back - healed_ns) / 1e9, 3)}


def first_receipt_after(received_ns: Sequence[int], healed_ns: int) -> dict[str, float]:
    """Time to recover: from the heal to the first receipt stamped after it (by its stamp:
    receipts written while the fault was in force may be read only after the heal)."""
    after = [ns for ns in received_ns if ns >= healed_ns]
    return {"first_receipt_after_heal_sec": round((min(after) - healed_ns) / 1e9, 3)} if after \
        else {}


def backlog_at(steps: list[tuple[int, int]], t_ns: int) -> int:
    """The backlog at `t_ns`, of backlog_steps' result."""
    index = bisect.bisect_right(steps, (t_ns, math.inf)) - 1
    return steps[index][1] if index >= 0 else 0


def _latencies(seqs: Iterable[int], first_received: Sequence[int],
               sent_at: Sequence[int]) -> list[int]:
    return [first_received[s] - sent_at[s] for s in seqs if first_received[s] != NEVER]


# A burst's aftermath is over when a message sent after the heaviest stage is received within
# this many times the first stage's median latency.
NORMAL_LATENCY_FACTOR = 2.0


def stage_figures(stages: Sequence[tuple[int, float]], send_ns: Sequence[int],
                  first_received: Sequence[int], sent_at: Sequence[int]) -> dict[str, object]:
    """Per stage of a burst workload: the latency of the messages sent in it, and the deepest
    backlog while it was being sent (until the next stage began); the deepest backlog of the
    run; and `recovery_sec`: from the last send of the heaviest stage (highest rate; the larger
    one on a tie) until the receipt of the first message sent after it whose latency is back
    within NORMAL_LATENCY_FACTOR times the first stage's p50 (None: not before the run ended, or
    it was last); and `drained_sec`: from that last send until the backlog is back to the first
    stage's deepest (None: never, messages were lost)."""
    steps = backlog_steps(send_ns, first_received)
    bounds = list(itertools.accumulate((count for count, _ in stages), initial=0))
    rows = []
    for index, (count, delay_ms) in enumerate(stages):
        first, end = bounds[index], bounds[index + 1]
        window_end = send_ns[end] if end < len(send_ns) else NEVER
        depths = [depth for t, depth in steps if send_ns[first] <= t < window_end]
        rows.append({"messages": count, "delay_ms": delay_ms,
                     "intended_rate": round(1000 / delay_ms, 1) if delay_ms else None,
                     "latency_ms": latency_ms(_latencies(range(first, end), first_received,
                                                         sent_at)),
                     "deepest_backlog": max(depths, default=0)})
    heaviest = max(range(len(stages)),
                   key=lambda i: (1 / stages[i][1] if stages[i][1] else math.inf, stages[i][0]))
    normal = rows[0]["latency_ms"]
    heavy_end_ns = send_ns[bounds[heaviest + 1] - 1]
    # The backlog back to the first stage's deepest: what the heavy stage piled up is gone.
    drained_ns = next((t for t, depth in steps
                       if t > heavy_end_ns and depth <= rows[0]["deepest_backlog"]), None)
    recovery_sec = None
    if normal and heaviest + 1 < len(stages):
        threshold_ns = NORMAL_LATENCY_FACTOR * normal["p50"] * 1e6
        recovered = next((first_received[s] for s in range(bounds[heaviest + 1], len(send_ns))
                          if first_received[s] != NEVER
                          and first_received[s] - sent_at[s] <= threshold_ns), None)
        if recovered is not None:
            recovery_sec = round((recovered - heavy_end_ns) / 1e9, 3)
    return {"stages": rows, "deepest_backlog": max((d for _, d in steps), default=0),
            "heaviest_stage": heaviest, "recovery_sec": recovery_sec,
            "drained_sec": round((drained_ns - heavy_end_ns) / 1e9, 3)
            if drained_ns is not None else None,
            "normal_latency_ms": round(NORMAL_LATENCY_FACTOR * normal["p50"], 3)
            if normal else None}


def mix_figures(mix: Sequence[tuple[int, int]], sizes: Sequence[int],
                first_received: Sequence[int], sent_at: Sequence[int]) -> list[dict[str, object]]:
    """Per kind of a mixed payload: its messages, their mean bytes, and their latency."""
    by_kind: list[list[int]] = [[] for _ in mix]
    for seq in range(len(sizes)):
        by_kind[mix_kind(seq, mix)].append(seq)
    return [{"records": records, "weight": weight, "messages": len(seqs),
             "payload_bytes": sum(sizes[s] for s in seqs) // max(1, len(seqs)),
             "received": sum(1 for s in seqs if first_received[s] != NEVER),
             "latency_ms": latency_ms(_latencies(seqs, first_received, sent_at))}
            for (records, weight), seqs in zip(mix, by_kind, strict=True)]


def target_figures(targets: Sequence[tuple[str, float]],
                   latency: dict[str, float] | None) -> dict[str, bool | None]:
    """Each latency target (p50 < 50 ms, ...) passed or not; None where nothing was received."""
    return {name: None if latency is None else latency[name] < bound for name, bound in targets}


def shape_figures(experiment: Experiment, receipts: Receipts,
                  latency: dict[str, float] | None) -> dict[str, object]:
    """The figures particular to a workload's shape: bursts per stage, the kinds of a mix,
    the latency targets, and for a paced run the backlog when sending ended."""
    cell, produced = experiment.cell, experiment.produced
    first_received, sent_at = first_receipts(receipts, cell.messages)
    offsets = cell.intended_offsets_ns()
    kafka_topic = hasattr(experiment.adapter, "partitions")
    m: dict[str, object] = {"payload": payload_figures(cell),
                            "partitions": cell.topic_partitions if kafka_topic else None}
    if offsets and produced is not None:
        send_ns = [produced.first_ns + offset for offset in offsets]
        # Messages waiting when the last was meant to be sent: a queue that keeps up holds
        # about rate x latency; one that falls behind, a share of everything sent.
        m["backlog_end_of_sending"] = backlog_at(backlog_steps(send_ns, first_received),
                                                 send_ns[-1])
        if isinstance(cell.rate, tuple):
            m.update(stage_figures(cell.rate, send_ns, first_received, sent_at))
        if experiment.fault_span:
            m["fault_recovery"] = {
                **fault_backlog(send_ns, first_received, *experiment.fault_span),
                **first_receipt_after(receipts.received_ns, healed_ns=experiment.fault_span[1])}
    if cell.mix:
        m["kinds"] = mix_figures(cell.mix, experiment.sizes, first_received, sent_at)
    if cell.targets:
        m["targets"] = target_figures(cell.targets, latency)
        m["target_bounds_ms"] = dict(cell.targets)
    return m


def payload_figures(cell: Cell) -> dict[str, object]:
    """What each message carried, for a report to name the row by."""
    if cell.payload_bytes is not None:
        return {"kind": "bytes", "bytes": cell.payload_bytes}
    if cell.mix:
        return {"kind": "mix", "format": cell.format,
                "mix": [{"records": r, "weight": w} for r, w in cell.mix]}
    return {"kind": "records", "format": cell.format, "records": cell.records}
