"""Producer modes (sync, async with an in-flight limit, forked processes) and what each records
per sequence number: sent once, stamped with its intended send time, acknowledged or failed."""

from __future__ import annotations

import functools
import os
import random
import re
import threading
import time
import uuid
from array import array
from concurrent.futures import Future
from pathlib import Path

import pytest

from queuebench import adapters
from queuebench.adapters.base import Backlog
from queuebench.adapters.boto3_sqs import Boto3SQSAdapter
from queuebench.adapters.confluent import ConfluentKafkaAdapter
from queuebench.adapters.faust import FaustAdapter
from queuebench.adapters.kafka_python import KafkaPythonAdapter
from queuebench.adapters.sqs_batching import BatchEntryFailed
from queuebench.engine import phases
from queuebench.engine.common import Experiment
from queuebench.engine.producers import (
    GIVE_UP_AFTER_FAILURES,
    ProducerFailed,
    Sending,
    merged,
    produce,
    producer_figures,
)
from queuebench.engine.results import ExperimentConfig
from queuebench.engine.workload import Workload, cells
from queuebench.payloads.builder import record_batches
from queuebench.worker.envelope import Envelope, unwrap
from tests.test_sqs import stubbed_producer


class Recorder:
    """A producer with `send` only (the default send_async wraps it): keeps what it was given
    and when, and refuses the keys in `fail`."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.fail = set(fail)
        self.sent: list[tuple[int, str, bytes]] = []  # (when, key, message)
        self.flushes = 0
        self.closed = False

    def record(self, payload: bytes, key: str) -> None:
        self.sent.append((time.time_ns(), key, payload))

    def send(self, payload, *, key=None):
        if key in self.fail:
            raise RuntimeError(f"broker refused message {key}")
        self.record(payload, key)

    def flush(self):
        self.flushes += 1

    def close(self):
        self.closed = True


class LateAcks(Recorder):
    """`send_async` whose outcomes a timer tells 1-10 ms later, out of order; counts how many
    sends awaited their acknowledgement at once."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        super().__init__(fail)
        self.awaiting = 0
        self.most_awaiting = 0
        self.lock = threading.Lock()
        self.timers: list[threading.Timer] = []

    def send_async(self, payload, *, key=None, on_done):
        with self.lock:
            self.awaiting += 1
            self.most_awaiting = max(self.most_awaiting, self.awaiting)
        self.record(payload, key)
        timer = threading.Timer(random.uniform(0.001, 0.01), self.ack, (on_done, key))
        self.timers.append(timer)
        timer.start()

    def ack(self, on_done, key: str) -> None:
        with self.lock:
            self.awaiting -= 1
        on_done(RuntimeError(f"no ack for {key}: NOT_ENOUGH_REPLICAS") if key in self.fail
                else None)

    def flush(self):
        super().flush()
        for timer in list(self.timers):
            timer.join()


class Batching(Recorder):
    """Holds sends back, their outcomes untold, until `batch` are held or flush(): as boto3
    SQS's batches of 10."""

    holds_sends = True

    def __init__(self, batch: int = 10) -> None:
        super().__init__()
        self.batch = batch
        self.held: list = []
        self.most_awaiting = 0

    def send_async(self, payload, *, key=None, on_done):
        self.record(payload, key)
        self.held.append(on_done)
        self.most_awaiting = max(self.most_awaiting, len(self.held))
        if len(self.held) >= self.batch:
            self.flush()

    def flush(self):
        super().flush()
        held, self.held = self.held, []
        for on_done in held:
            on_done(None)


def sent_files(queue_dir: Path) -> list[tuple[int, int, Envelope]]:
    """What the stub pair's producers sent to `queue_dir`: (sending process's pid, when it was
    sent in ns, envelope) of each message, from its file name and bytes."""
    sent = []
    for path in sorted((queue_dir / "ready").iterdir()):
        when, pid, _ = path.name.split("-")
        sent.append((int(pid), int(when), unwrap(path.read_bytes())))
    return sent


def experiment(tmp_path: Path, workload: Workload, make_producer=None,
               url: str = "sqlalchemy+sqlite:///q.sqlite") -> Experiment:
    """An Experiment on the pair at `url` (the SQL queue's adapter) whose producer is
    `make_producer()` (no broker), or the pair's own."""
    adapter = adapters.create(url, queue="q")
    if make_producer is not None:
        adapter.producer = make_producer
    cell = cells("x", workload)[0]
    config = ExperimentConfig(cell.kind, adapter.scheme, "default", cell.format,
                              cell.messages, cell.records, cell.work_ms, 60.0)
    return Experiment(config, cell, adapter,
                      record_batches("sqlite://", cell.records, cell.messages), tmp_path)


def sent_envelopes(recorder: Recorder):
    return [(when, key, unwrap(message)) for when, key, message in recorder.sent]


def check_sent_once_on_schedule(recorder: Recorder, run: Experiment, first_ns: int,
                                gap_ns: int) -> None:
    """Every seq sent once, keyed by its seq, stamped with its slot and sent no earlier."""
    envelopes = sent_envelopes(recorder)
    assert sorted(e.seq for _, _, e in envelopes) == list(range(run.cell.messages))
    assert all(key == str(e.seq) for _, key, e in envelopes)
    assert all(e.sent_ns - first_ns == e.seq * gap_ns for _, _, e in envelopes)
    assert all(when >= e.sent_ns for when, _, e in envelopes)
    assert all(e.payload_ok and run.sizes[e.seq] == len(bytes(e.payload))
               for _, _, e in envelopes)


def test_sync_sends_each_seq_once_stamped_and_acked(tmp_path):
    """sync: seq order, intended send times (200 msg/s), sizes kept, every send acknowledged,
    one flush at the end."""
    recorder = Recorder()
    run = experiment(tmp_path, Workload(messages=20, rate=200, payload={"records": 3}),
                     lambda: recorder)
    produced = run.produce()
    check_sent_once_on_schedule(recorder, run, produced.first_ns, 5_000_000)
    assert [e.seq for _, _, e in sent_envelopes(recorder)] == list(range(20))
    assert produced.acked == [True] * 20 and produced.errors == {} and produced.failed == 0
    assert run.produced is produced and run.sizes == produced.sizes
    assert run.payload_bytes == sum(produced.sizes) > 0
    assert 0.09 <= produced.seconds < 0.5
    assert (recorder.flushes, recorder.closed) == (1, True)


def test_send_to_ack_latency_runs_from_the_intended_send_to_the_acknowledgement(tmp_path):
    """20 sends at 100 msg/s (0.19 s from the first slot to the last) whose acknowledgements
    come only at flush, as a Kafka client's in sync mode: the first send's acknowledgement
    waited the whole run, so its latency is at least 0.19 s and p99 at least 0.18 s (a lower
    bound: a slow machine only adds). Acknowledged one at a time, every send has its own."""
    queued = Batching(batch=10**6)
    run = experiment(tmp_path, Workload(messages=20, rate=100, payload={"records": 1}),
                     lambda: queued)
    at_flush = run.produce()
    one_at_a_time = experiment(
        tmp_path / "late", Workload(messages=20, rate=100, payload={"records": 1},
                                    producers={"mode": "async", "in_flight": 1}),
        LateAcks).produce()
    assert len(at_flush.ack_latencies_ns) == len(one_at_a_time.ack_latencies_ns) == 20
    assert max(at_flush.ack_latencies_ns) >= 190_000_000
    figures = producer_figures(at_flush, mode="sync", count=1, in_flight=1, lost_seqs=[])
    assert figures["ack_latency_ms"]["p99"] >= 180


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failed_send_is_recorded_unacked_with_its_error_and_sending_goes_on(tmp_path, mode):
    """A send that raises (sync) or whose future fails (async) leaves its seq unacknowledged
    with the error text; every other seq is still sent and acknowledged."""
    maker = Recorder if mode == "sync" else LateAcks
    recorder = maker(fail={"3", "11"})
    run = experiment(tmp_path, Workload(messages=15, producers={"mode": mode}),
                     lambda: recorder)
    produced = run.produce()
    assert produced.acked == [seq not in (3, 11) for seq in range(15)]
    assert produced.failed == 2 and produced.unacked_seqs() == [3, 11]
    assert set(produced.errors) == {3, 11}
    expected = "RuntimeError: broker refused message 3" if mode == "sync" else \
        "RuntimeError: no ack for 3: NOT_ENOUGH_REPLICAS"
    assert produced.errors[3] == expected
    sent = {e.seq for _, _, e in sent_envelopes(recorder)}
    assert sent == (set(range(15)) - {3, 11} if mode == "sync" else set(range(15)))


class DiesAtFlush(Batching):
    """Holds every send, then its connection dies at flush(), as a broker stopped under it."""

    def flush(self):
        raise ConnectionError("connection reset by peer")

    def close(self):
        raise ConnectionError("already closed")


def test_a_flush_that_fails_leaves_the_sends_it_held_unacknowledged(tmp_path):
    """The broker went away before the last sends were confirmed: they are not acknowledged,
    with the flush's error, and the repeat goes on to count what arrived."""
    run = experiment(tmp_path, Workload(messages=5, producers={"mode": "async"}),
                     lambda: DiesAtFlush(batch=100))
    produced = run.produce()
    assert produced.acked == [False] * 5
    assert produced.errors[0] == "flush() failed: ConnectionError: connection reset by peer"


def test_a_producer_that_fails_every_send_stops_the_run(tmp_path):
    """With nothing acknowledged, GIVE_UP_AFTER_FAILURES failures end producing with the first
    error, as one failure ended it before: a dead broker is an error row, not 10,000 losses."""
    recorder = Recorder(fail={str(seq) for seq in range(1000)})
    run = experiment(tmp_path, Workload(messages=1000), lambda: recorder)
    with pytest.raises(ProducerFailed, match=rf"failed its first {GIVE_UP_AFTER_FAILURES} sends"
                       r" .*message 0: RuntimeError: broker refused message 0"):
        run.produce()
    assert recorder.closed


@pytest.mark.parametrize("in_flight", [1, 4, 16])
def test_async_never_has_more_than_in_flight_awaiting_acks(tmp_path, in_flight):
    """Acks that come 1-10 ms later, out of order: at most in_flight sends await one, every
    seq is sent once with its intended time and acknowledged."""
    recorder = LateAcks()
    run = experiment(tmp_path, Workload(messages=60, rate=2000, producers={
        "mode": "async", "in_flight": in_flight}), lambda: recorder)
    produced = run.produce()
    assert 1 <= recorder.most_awaiting <= in_flight
    if in_flight > 1:
        assert recorder.most_awaiting > 1  # it did overlap sends
    check_sent_once_on_schedule(recorder, run, produced.first_ns, 500_000)
    assert produced.acked == [True] * 60 and produced.errors == {}


def test_async_flushes_a_producer_that_holds_sends_back_for_a_batch(tmp_path):
    """in_flight 3 below a batch of 10: the held sends are flushed out rather than waited for
    forever (boto3 SQS), and no more than 3 await an ack."""
    recorder = Batching(batch=10)
    run = experiment(tmp_path, Workload(messages=25, producers={"mode": "async",
                                                                "in_flight": 3}),
                     lambda: recorder)
    produced = run.produce()
    assert recorder.most_awaiting == 3
    assert produced.acked == [True] * 25
    assert sorted(e.seq for _, _, e in sent_envelopes(recorder)) == list(range(25))


def test_processes_cover_every_seq_once_across_processes(tmp_path):
    """3 producer processes, each building the pair's adapter from its URL (the stub pair's
    folder queue): process i sends i, i+3, ...; together every seq exactly once, each at its own
    slot in the rate shape and no earlier; the sizes and acknowledgements come back."""
    run = experiment(tmp_path, Workload(messages=30, rate=200, producers={
        "mode": "processes", "count": 3}), url=f"stub+dir:///{tmp_path / 'queues'}")
    produced = run.produce()
    sent = sent_files(tmp_path / "queues" / "q")
    assert sorted(envelope.seq for *_, envelope in sent) == list(range(30))
    residues: dict[int, set[int]] = {}  # each process its own residue: i, i + 3, ...
    for pid, _, envelope in sent:
        residues.setdefault(pid, set()).add(envelope.seq % 3)
    assert len(residues) == 3 and os.getpid() not in residues
    assert all(len(residue) == 1 for residue in residues.values())
    for _, when, envelope in sent:
        assert envelope.sent_ns - produced.first_ns == envelope.seq * 5_000_000
        assert when >= envelope.sent_ns
        assert produced.sizes[envelope.seq] == len(envelope.payload)
    assert produced.acked == [True] * 30 and produced.errors == {}
    assert run.sizes == produced.sizes
    assert (produced.mode, produced.producers) == ("processes", 3)
    assert 0.14 <= produced.seconds < 1.0


def test_merged_reports_keep_each_processes_sends_and_the_first_errors():
    """Two producer processes' reports: each seq's size and acknowledgement where its process
    put it, the errors of both, every latency, and the time to the last one's end."""
    first = 1_000
    reports = [(range(0, 4, 2), [10, 12], [True, False], {2: "RuntimeError: refused 2"},
                first + 900, array("q", [5])),
               (range(1, 4, 2), [11, 13], [False, True], {1: "RuntimeError: refused 1"},
                first + 500, array("q", [7]))]
    produced = merged(reports, 4, first, 2)
    assert (produced.sizes, produced.acked) == ([10, 11, 12, 13], [True, False, False, True])
    assert produced.errors == {1: "RuntimeError: refused 1", 2: "RuntimeError: refused 2"}
    assert sorted(produced.ack_latencies_ns) == [5, 7]
    assert produced.seconds == 900 / 1e9
    assert (produced.mode, produced.producers, produced.failed) == ("processes", 2, 2)


def test_a_producer_process_that_cannot_open_its_producer_fails_the_run(tmp_path):
    """The stub's queue folder lies under a file: each process fails to open its producer, and
    the run fails naming the first process and its error."""
    (tmp_path / "file").write_text("")
    run = experiment(tmp_path, Workload(messages=10, producers={"mode": "processes",
                                                                "count": 2}),
                     url=f"stub+dir:///{tmp_path / 'file'}")
    with pytest.raises(ProducerFailed, match=re.escape(
            "producer process 0: NotADirectoryError: [Errno 20] Not a directory")):
        run.produce()


def test_figures_say_the_mode_and_what_was_acknowledged(tmp_path, monkeypatch):
    """3 messages, seq 1 refused, only seq 0 received: 2 lost, of which seq 2 had been
    acknowledged (lost_acked 1); send_failed 1 and unacked_seqs [1]."""
    run = experiment(tmp_path, Workload(messages=3, producers={"mode": "async",
                                                               "in_flight": 2}),
                     lambda: LateAcks(fail={"1"}))
    run.produce()
    monkeypatch.setattr(run.adapter, "backlog", lambda: Backlog(waiting=0))
    ledger = tmp_path / "ledger"
    ledger.mkdir(exist_ok=True)
    sent_ns = run.produced.first_ns
    (ledger / "receipts-1.log").write_text(f"{run.run_id} 0 {sent_ns} {sent_ns + 1000} ok\n")
    m = phases.figures(run, outcome="broker empty", started=time.monotonic(),
                       produce_sec=run.produced.seconds, consumers_from_ns=sent_ns,
                       startup_sec=0.1, stop=None)
    assert (m["producer_mode"], m["producers"], m["producer_in_flight"]) == ("async", 1, 2)
    assert (m["send_acked"], m["send_failed"], m["unacked_seqs"]) == (2, 1, [1])
    assert m["send_errors"] == {"1": "RuntimeError: no ack for 1: NOT_ENOUGH_REPLICAS"}
    assert (m["lost"], m["lost_acked"]) == (2, 1)


def over_the_limit(count: int, big: int) -> list:
    """`count` messages of 5 records, message `big` of 10,000 (1.7 MB of JSON: over every
    Kafka and SQS limit)."""
    records = list(record_batches("sqlite://", 5, count))
    records[big] = record_batches("sqlite://", 10_000, 1)[0]
    return records


@pytest.mark.broker("kafka")
@pytest.mark.parametrize("cls", [ConfluentKafkaAdapter, KafkaPythonAdapter, FaustAdapter],
                         ids=["confluent-kafka", "kafka-python", "faust"])
def test_async_on_kafka_acks_every_message_the_broker_took(cls):
    """On the real broker, async (in_flight 20) acknowledges each of 300 messages but the one
    over the client's size limit, whose error is its own; the topic then holds 299. One more
    send is told once the broker holds it. (Whether it is told after send_async returns is a
    race a loaded machine can lose: not asserted.)"""
    adapter = cls(f"{cls.scheme}://127.0.0.1:9092",
                  queue=f"qb-test-producers-{uuid.uuid4().hex[:10]}")
    adapter.prepare()
    try:
        produced = produce(adapter, Sending(uuid.uuid4(), over_the_limit(300, 42), "json", None),
                           300, mode="async", in_flight=20)
        assert produced.acked == [seq != 42 for seq in range(300)]
        assert list(produced.errors) == [42]
        assert ("MSG_SIZE_TOO_LARGE" if cls is ConfluentKafkaAdapter
                else "MessageSizeTooLargeError") in produced.errors[42]
        assert adapter.backlog().waiting == 299
        producer = adapter.producer()  # a real acknowledgement takes a round trip to the broker
        try:
            told: Future = Future()
            producer.send_async(b"one more", key="300", on_done=told.set_result)
            assert told.result(timeout=30) is None
        finally:
            producer.close()
        assert adapter.backlog().waiting == 300
    finally:
        adapter.cleanup()


@pytest.mark.broker("elasticmq")
def test_async_on_sqs_acks_every_message_in_batches_smaller_than_ten():
    """boto3 SQS batches up to 10, but in_flight 3 flushes a batch at 3: every message is
    acknowledged but the one over 1 MiB, which goes alone and fails alone."""
    adapter = Boto3SQSAdapter("boto3+sqs://127.0.0.1:9324",
                              queue=f"qb-test-producers-{uuid.uuid4().hex[:10]}")
    adapter.prepare()
    try:
        produced = produce(adapter, Sending(uuid.uuid4(), over_the_limit(40, 7), "json", None),
                           40, mode="async", in_flight=3)
        assert produced.acked == [seq != 7 for seq in range(40)]
        assert "MessageTooLong" in produced.errors[7]
        assert adapter.backlog().waiting == 39
    finally:
        adapter.cleanup()


def test_sqs_send_async_gives_each_batch_entry_its_own_outcome():
    """One SendMessageBatch of three: the entry SQS reports under `Failed` fails its own future,
    the others are acknowledged; held in the batch, their outcomes were untold."""
    producer, stub = stubbed_producer(max_open_sec=60, max_entries=3)
    with stub:
        stub.add_response("send_message_batch", {
            "Successful": [{"Id": i, "MessageId": i, "MD5OfMessageBody": "x"} for i in "02"],
            "Failed": [{"Id": "1", "SenderFault": True, "Code": "InvalidParameterValue",
                        "Message": "Message must be shorter than 1048576 bytes."}]})
        told: dict[bytes, BaseException | None] = {}
        for body in (b"a", b"b"):
            producer.send_async(body, on_done=functools.partial(told.__setitem__, body))
        assert not told  # held in the batch
        producer.send_async(b"c", on_done=functools.partial(told.__setitem__, b"c"))  # it goes
        producer.flush()  # raises nothing: the failure went to its on_done
        stub.assert_no_pending_responses()
    assert told[b"a"] is None and told[b"c"] is None
    assert isinstance(told[b"b"], BatchEntryFailed)
    assert "InvalidParameterValue: Message must be shorter" in str(told[b"b"])
    producer.close()
