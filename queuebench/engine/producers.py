"""Producing: every message encoded and sent by the rate shape, in the workload's producer mode,
with what the broker acknowledged recorded per sequence number.

Modes (`producers: {count, mode, in_flight}`):

- `sync`: one producer, one send at a time, each returning once the client took it (a Kafka
  client queues it, Celery publishes it, Huey stores it, boto3 SQS buffers it into a batch of
  10); every acknowledgement is collected at the final `flush()`. This is the loop queuebench
  always ran.
- `async`: one producer, up to `in_flight` sends awaiting the broker's acknowledgement at once;
  the next send waits for a slot. What runs in parallel is the library's own: Kafka clients
  acknowledge from their I/O threads, faust from its event loop. A library that tells nothing
  of a message after its send returned (every task library) gains nothing: its outcome is
  known when `send_async` returns.
- `processes`: `count` producer processes, each building the adapter anew from its URL and
  opening its own producer, and sending, as `sync` does, the sequence numbers i, i + count,
  i + 2 count, ... each at its own intended send time: the rate shape is the workload's,
  whatever the count. They are started as fresh interpreters (multiprocessing's "spawn"), not
  forked: SQLite forbids carrying its state across fork(), and producers forked from a harness
  that had used the queue's file wrote into a WAL the consumer had deleted, corrupting it.

In every mode, encoding the records is inside the timed loop, as in a user's producer, and each
message is stamped with when it was meant to be sent (its slot in the rate shape), so a producer
that falls behind shows as latency (no coordinated omission). The time to produce runs from the
first send to the last acknowledgement; each acknowledgement's latency runs from the message's
intended send time to when its producer told the outcome (for a Kafka client in `sync`, which
only queues, that is the final flush: `async` with 1 in flight is the seed's wait-for-each-ack).

Every sequence number ends acknowledged (its producer told so: the broker took it, as far
as the library can tell) or not, with the error text of the first few that failed. A message
acknowledged and never received is a loss the broker or library is answerable for; one never
acknowledged was not sent.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import multiprocessing
import threading
import time
import typing
import uuid
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_any

from queuebench.adapters import AdapterSpec, from_spec, spec_of
from queuebench.adapters.base import Adapter, Done, Producer, send_async
from queuebench.engine.metrics import latency_ms
from queuebench.errors import QueuebenchError
from queuebench.payloads.codecs import encode
from queuebench.payloads.records import StockRecord
from queuebench.worker.envelope import wrap

MODES = ("sync", "async", "processes")
ERRORS_KEPT = 10  # error texts kept, of the first sends that failed
# With nothing acknowledged yet, this many failures mean the producer cannot send at all (a broker
# that is down, a payload every send refuses): stop, as one failure stopped the run before.
GIVE_UP_AFTER_FAILURES = 20
# After flush() every acknowledgement has come or failed; a send still untold this much later is
# recorded as unacknowledged rather than waited for forever.
ACK_WAIT_AFTER_FLUSH_SEC = 30.0
SLOT_WAIT_SEC = 0.05


class ProducerFailed(QueuebenchError):
    """The producer could not send at all, or a producer process died before reporting."""


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Produced:
    """What a repeat's producing sent and what the broker acknowledged, per sequence number."""

    first_ns: int  # when the first message was meant to be sent (wall clock, ns)
    seconds: float  # first send to the last acknowledgement
    sizes: list[int]  # bytes of each payload as sent (0: never encoded)
    acked: list[bool]  # the broker acknowledged the send (False: failed, or no answer)
    errors: dict[int, str] = field(default_factory=dict)  # the first few failures' error text
    mode: str = "sync"
    producers: int = 1
    # intended send time to acknowledgement, of each acknowledged send (ns)
    ack_latencies_ns: Sequence[int] = ()

    @property
    def failed(self) -> int:
        """Sends not acknowledged: refused, failed, or never answered."""
        return self.acked.count(False)

    def unacked_seqs(self, limit: int | None = None) -> list[int]:
        """The sequence numbers not acknowledged, in order; the first `limit` of them."""
        return list(itertools.islice((seq for seq, ok in enumerate(self.acked) if not ok), limit))


@dataclass(frozen=True)
class Sending:
    """What every producer of a repeat sends: the same for each producer process."""

    run_id: uuid.UUID
    records: Sequence[list[StockRecord]]  # message seq's stock records, encoded when it is sent
    fmt: str
    offsets: Sequence[int] | None  # intended send times from the first (ns); None: at once


class Acks:
    """The outcome of each send, told by the producer (a client's I/O thread, often); when, on
    the engine's clock (this host's less `clock_offset_ns`, as send_seqs keeps it)."""

    def __init__(self, messages: int, clock_offset_ns: int = 0) -> None:
        self.clock_offset_ns = clock_offset_ns
        self.sizes = [0] * messages
        self.acked = [False] * messages
        self.errors: dict[int, str] = {}
        self.acked_count = 0
        self.failed_count = 0
        # intended send time to acknowledgement; an array: a million ints as objects cost 36 MB
        self.ack_latencies_ns = array("q")
        self._pending: dict[int, int] = {}  # sent, outcome not told yet: its intended send ns
        self._changed = threading.Condition()

    def expect(self, seq: int, intended_ns: int) -> Done:
        """Note that `seq`, meant to be sent at `intended_ns`, is being sent; return what its
        producer tells the outcome to."""
        with self._changed:
            self._pending[seq] = intended_ns
        return functools.partial(self._settled, seq)

    def _settled(self, seq: int, exc: BaseException | None) -> None:
        told_ns = time.time_ns() - self.clock_offset_ns
        with self._changed:
            intended_ns = self._pending.pop(seq, None)
            if intended_ns is None:
                return  # given up on already (no answer after flush)
            if exc is not None:
                self._fail(seq, error_text(exc))
            else:
                self.acked[seq] = True
                self.acked_count += 1
                self.ack_latencies_ns.append(told_ns - intended_ns)
            self._changed.notify_all()

    def _fail(self, seq: int, text: str) -> None:
        self.failed_count += 1
        if len(self.errors) < ERRORS_KEPT:
            self.errors[seq] = text

    def check(self) -> None:
        """Raise ProducerFailed if the producer has failed every send so far, often enough."""
        if self.acked_count == 0 and self.failed_count >= GIVE_UP_AFTER_FAILURES:
            first = min(self.errors)
            raise ProducerFailed(f"the producer failed its first {self.failed_count} sends and "
                                 f"none was acknowledged; message {first}: {self.errors[first]}")

    def wait_below(self, limit: int, producer: Producer) -> None:
        """Wait until fewer than `limit` sends await their acknowledgement.

        A producer that holds sends back to batch them (boto3 SQS) is flushed instead, since
        no acknowledgement of a held send would come otherwise.
        """
        holds_sends = getattr(producer, "holds_sends", False)
        while True:
            with self._changed:
                if len(self._pending) < limit:
                    return
                if not holds_sends:
                    self._changed.wait(SLOT_WAIT_SEC)
                    continue
            producer.flush()  # outside the lock: the outcomes it tells take it

    def fail_pending(self, text: str) -> None:
        """Every send still untold failed: its producer's connection died under it."""
        with self._changed:
            for seq in sorted(self._pending):
                self._fail(seq, text)
            self._pending.clear()

    def wait_all(self, timeout: float) -> None:
        """After flush(): wait for the last acknowledgements; what has none by then failed."""
        with self._changed:
            self._changed.wait_for(lambda: not self._pending, timeout)
            for seq in sorted(self._pending):
                self._fail(seq, f"no acknowledgement within {timeout:g} s after flush()")
            self._pending.clear()


def send_seqs(producer: Producer, sending: Sending, seqs: Iterable[int], first_ns: int,
              acks: Acks, in_flight: int | None = None, clock_offset_ns: int = 0) -> None:
    """Encode and send each of `seqs` at its intended time, then flush and collect the acks.

    With `in_flight`, no more than that many sends await their acknowledgement at once. Times
    and send stamps are on the engine's clock: this host's clock less `clock_offset_ns` (a
    producer on a cluster's node, whose clock runs that far ahead of the engine's).
    """
    offsets = sending.offsets
    for seq in seqs:
        intended_ns = first_ns + offsets[seq] if offsets else time.time_ns() - clock_offset_ns
        if (ahead_ns := intended_ns - (time.time_ns() - clock_offset_ns)) > 0:
            time.sleep(ahead_ns / 1e9)
        if in_flight is not None:
            acks.wait_below(in_flight, producer)
        payload = encode(sending.records[seq], sending.fmt)
        acks.sizes[seq] = len(payload)
        send_async(producer, wrap(sending.run_id, seq, payload, sent_ns=intended_ns),
                   key=str(seq), on_done=acks.expect(seq, intended_ns))
        acks.check()
    try:
        producer.flush()
    except Exception as exc:  # a broker that went away under the last sends: not acknowledged
        acks.fail_pending(f"flush() failed: {error_text(exc)}")
    acks.wait_all(ACK_WAIT_AFTER_FLUSH_SEC)


def produce(adapter: Adapter, sending: Sending, messages: int, *, mode: str = "sync",
            count: int = 1, in_flight: int = 100) -> Produced:
    """Send messages 0..messages-1 in `mode`; return what was sent and acknowledged."""
    if mode == "processes":
        return produce_in_processes(adapter, sending, messages, count)
    if mode not in MODES:
        raise ValueError(f"unknown producer mode {mode!r}")
    acks = Acks(messages)
    producer = adapter.producer()
    try:
        first_ns = time.time_ns()
        started = time.perf_counter()
        send_seqs(producer, sending, range(messages), first_ns, acks,
                  in_flight=in_flight if mode == "async" else None)
        seconds = time.perf_counter() - started
    finally:
        with contextlib.suppress(Exception):  # a connection a fault broke fails to close too
            producer.close()
    return Produced(first_ns, seconds, acks.sizes, acks.acked, dict(acks.errors), mode=mode,
                    ack_latencies_ns=acks.ack_latencies_ns)


# What a producer process hands back: its sequence numbers, the bytes sent and whether the
# broker acknowledged each, the first failures' error text, when it finished (ns, on the
# engine's clock: the monotonic clocks of two hosts have nothing in common), and each
# acknowledgement's latency (ns).
Report = tuple[range, list[int], list[bool], dict[int, str], int, array]


def shares(messages: int, count: int) -> list[range]:
    """The sequence numbers of each of `count` producer processes: i, i + count, ..."""
    return [range(index, messages, count) for index in range(count)]


def _producer_process(conn: Connection, spec: AdapterSpec, sending: Sending, messages: int,
                      seqs: range, clock_offset_ns: int) -> None:
    """One producer process: open a producer, say ready, send `seqs` from the first_ns the
    engine sends back, then report (see Report)."""
    try:
        producer = from_spec(spec).producer()
    except BaseException as exc:
        conn.send(("error", error_text(exc)))
        return
    try:
        conn.send(("ready",))
        first_ns = conn.recv()
        if first_ns is None:  # the engine gave up: another producer could not start
            return
        if (ahead_ns := first_ns - (time.time_ns() - clock_offset_ns)) > 0:  # a cluster's lead
            time.sleep(ahead_ns / 1e9)
        acks = Acks(messages, clock_offset_ns)
        send_seqs(producer, sending, seqs, first_ns, acks, clock_offset_ns=clock_offset_ns)
        conn.send(("done", seqs, [acks.sizes[s] for s in seqs], [acks.acked[s] for s in seqs],
                   acks.errors, time.time_ns() - clock_offset_ns, acks.ack_latencies_ns))
    except BaseException as exc:
        conn.send(("error", error_text(exc)))
    finally:
        with contextlib.suppress(Exception):  # as in produce()
            producer.close()
        conn.close()


class ProducerProcesses:
    """Producer processes, one per share of the sequence numbers: started, each opening
    its producer, until all are ready (ProducerFailed if one cannot); told when the first
    message is meant to be sent (`go`); then their reports gathered (`reports`).

    `clock_offset_ns`: how far this host's clock runs ahead of the engine's (a cluster's node),
    so that every time they keep, and every send stamp, is on the engine's clock.
    """

    def __init__(self, spec: AdapterSpec, sending: Sending, messages: int,
                 seqs: list[range], clock_offset_ns: int = 0) -> None:
        context = multiprocessing.get_context("spawn")
        self.children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        self.told = False  # whether the children were told when to start
        try:
            for share in seqs:
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_producer_process, name=f"queuebench-producer process {share.start}",
                    daemon=True, args=(theirs, spec, sending, messages, share,
                                       clock_offset_ns))
                process.start()
                theirs.close()
                self.children.append((process, ours))
            for process, conn in self.children:
                _report(process, conn, "ready")
        except BaseException:
            self.close()
            raise

    def go(self, first_ns: int) -> None:
        for _, conn in self.children:
            conn.send(first_ns)
        self.told = True

    def reports(self) -> list[Report]:
        return [_report(process, conn, "done")[1:] for process, conn in self.children]

    def close(self) -> None:
        for process, conn in self.children:
            if not self.told and process.is_alive():
                with contextlib.suppress(OSError):
                    conn.send(None)  # waiting for first_ns: stop instead
            conn.close()
        for process, _ in self.children:
            process.join(5.0)
            if process.is_alive():
                process.terminate()
                process.join(5.0)


def _report(process: multiprocessing.process.BaseProcess, conn: Connection,
            expected: str) -> tuple:
    """The next message of a producer process; ProducerFailed if it failed or died."""
    name = process.name.removeprefix("queuebench-")  # "producer process N"
    wait_for_any([conn, process.sentinel])
    if conn.poll():
        try:
            message = conn.recv()
        except EOFError:
            message = None
        if message is not None and message[0] == expected:
            return message
        if message is not None and message[0] == "error":
            raise ProducerFailed(f"{name}: {message[1]}")
    process.join(1.0)
    raise ProducerFailed(f"{name} exited (code {process.exitcode}) before reporting")


def produce_in_processes(adapter: Adapter, sending: Sending, messages: int,
                         count: int) -> Produced:
    """`count` producer processes, process i sending seqs i, i + count, ...

    The processes open their producers first; the clock starts once all are ready, and stops at
    the last one's final acknowledgement.
    """
    processes = ProducerProcesses(spec_of(adapter), sending, messages, shares(messages, count))
    try:
        first_ns = time.time_ns()
        processes.go(first_ns)
        return merged(processes.reports(), messages, first_ns, count)
    finally:
        processes.close()


def merged(reports: Iterable[Report], messages: int, first_ns: int, count: int) -> Produced:
    """What `count` producer processes sent, from their reports."""
    sizes, acked, errors, ended = [0] * messages, [False] * messages, {}, first_ns
    ack_latencies = array("q")
    for seqs, their_sizes, their_acks, their_errors, their_end, their_latencies in reports:
        for seq, size, ok in zip(seqs, their_sizes, their_acks, strict=True):
            sizes[seq], acked[seq] = size, ok
        errors.update(their_errors)
        ended = max(ended, their_end)
        ack_latencies += their_latencies
    kept = dict(sorted(errors.items())[:ERRORS_KEPT])
    return Produced(first_ns, (ended - first_ns) / 1e9, sizes, acked, kept, mode="processes",
                    producers=count, ack_latencies_ns=ack_latencies)


UNACKED_SEQS_SHOWN = 100


def producer_figures(produced: Produced | None, *, mode: str, count: int, in_flight: int,
                     lost_seqs: Sequence[int]) -> dict[str, object]:
    """The producer's figures of a repeat: its mode, how many producers, what the broker
    acknowledged, and how many of the lost messages it had acknowledged ("lost, acknowledged":
    the broker or library dropped them; a lost message never acknowledged was not sent)."""
    if produced is None:  # nothing was produced (figures of a repeat that failed first)
        return {"producer_mode": mode, "producers": count if mode == "processes" else 1,
                "producer_in_flight": in_flight if mode == "async" else None,
                "send_acked": None, "send_failed": None, "unacked_seqs": [], "send_errors": {},
                "lost_acked": None, "recovered": None, "ack_latency_ms": None}
    acked = produced.acked
    return {
        "producer_mode": produced.mode,
        "producers": produced.producers,
        "producer_in_flight": in_flight if produced.mode == "async" else None,
        "send_acked": len(acked) - produced.failed,
        "send_failed": produced.failed,  # refused, failed or never answered
        "unacked_seqs": produced.unacked_seqs(UNACKED_SEQS_SHOWN),
        "send_errors": {str(seq): text for seq, text in sorted(produced.errors.items())},
        # from each send's intended time to its acknowledgement, of the acknowledged ones
        "ack_latency_ms": latency_ms(produced.ack_latencies_ns),
        "lost_acked": sum(1 for seq in lost_seqs if 0 <= seq < len(acked) and acked[seq]),
        # Jepsen's "recovered": sends never acknowledged (failed, or no answer) whose message
        # arrived all the same
        "recovered": produced.failed - sum(1 for seq in lost_seqs
                                           if 0 <= seq < len(acked) and not acked[seq]),
    }


def has_async_send(adapter: Adapter) -> bool:
    """Whether the pair's producer acknowledges sends from the library's own I/O (its class
    has `send_async`): without it, `async` mode sends exactly as `sync` does."""
    producer_class = typing.get_type_hints(type(adapter).producer).get("return")
    return hasattr(producer_class, "send_async")
