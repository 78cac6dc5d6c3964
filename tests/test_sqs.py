"""boto3 on SQS (ElasticMQ 1.7.1, strict limits), seen through the adapter the runner uses.

The cross-pair contract suite lives elsewhere; these tests pin what is particular to SQS: bodies
are base64 text under a 1 MiB limit with ElasticMQ's own error over it, sends go in batches that
respect that limit too, and a message leaves the queue only when deleted after its handling, so
a SIGKILL costs a visibility timeout's wait, never the message.
"""

from __future__ import annotations

import base64
import functools
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from queuebench.adapters import create
from queuebench.adapters.base import Variant
from queuebench.adapters.boto3_sqs import Boto3SQSAdapter
from queuebench.adapters.sqs_batching import BatchEntryFailed, BatchingProducer
from queuebench.adapters.sqs_common import MAX_MESSAGE_BYTES, QUEUE_GONE, endpoint_for, sqs_client
from queuebench.engine.ledger import tally
from queuebench.errors import BrokerUnreachable, UsageError
from queuebench.payloads import PayloadBuilder
from queuebench.worker.envelope import unwrap, wrap
from tests.harness import PairRun, send_all, wait_for

WAIT_SEC = 20.0  # bound on every wait that does not include a visibility timeout
WORK_MS = 300.0  # long enough for a signal to land mid-task
INTO_TASK_SEC = 0.05  # after a receipt and its delete, the next message is being worked on
LARGEST_FITTING_PAYLOAD = MAX_MESSAGE_BYTES * 3 // 4  # 786,432 bytes: base64 is exactly 1 MiB

sqs = pytest.mark.broker("elasticmq")


def new_adapter(cls: type[Boto3SQSAdapter] = Boto3SQSAdapter) -> Boto3SQSAdapter:
    # ElasticMQ is shared with other engineers: a queue of this test's own.
    return cls("boto3+sqs://127.0.0.1:9324", queue=f"qbtest-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def adapter() -> Iterator[Boto3SQSAdapter]:
    pair = new_adapter()
    pair.prepare()
    yield pair
    pair.client.delete_queue(QueueUrl=pair.queue_url)
    pair.cleanup()


def counts(adapter: Boto3SQSAdapter) -> tuple[int, int]:
    """(visible, in flight) as the broker reports them."""
    attributes = adapter.client.get_queue_attributes(
        QueueUrl=adapter.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]))


def test_url_names_the_endpoint_local_over_http_aws_over_https() -> None:
    """The default URL is ElasticMQ over http; an sqs.<region>.amazonaws.com host is AWS."""
    local = create("boto3+sqs", queue="q")
    assert (local.endpoint.url, local.endpoint.aws) == ("http://127.0.0.1:9324", False)
    aws = endpoint_for("boto3+sqs://sqs.eu-west-1.amazonaws.com")
    assert (aws.url, aws.region, aws.aws) == ("https://sqs.eu-west-1.amazonaws.com",
                                              "eu-west-1", True)
    with pytest.raises(UsageError, match="letters, digits, - or _"):
        create("boto3+sqs", queue="queue.with.dots")


def test_wire_size_is_base64_a_third_more() -> None:
    """The declared wire size is the base64 body's length, which is what the broker measures."""
    limit = Boto3SQSAdapter.size_limit
    for size in (0, 1, 2, 3, 1000, LARGEST_FITTING_PAYLOAD):
        assert limit.wire_bytes(size) == len(base64.b64encode(bytes(size)))
    assert limit.wire_bytes(LARGEST_FITTING_PAYLOAD) == MAX_MESSAGE_BYTES
    assert limit.wire_bytes(300_000) / 300_000 == pytest.approx(4 / 3, abs=1e-4)


def test_unreachable_endpoint_is_named_within_the_timeout() -> None:
    """Nothing listening: BrokerUnreachable names the endpoint, after one attempt, in time."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    adapter = Boto3SQSAdapter(f"boto3+sqs://127.0.0.1:{port}", queue="q")
    started = time.monotonic()
    with pytest.raises(BrokerUnreachable, match=f"http://127.0.0.1:{port}"):
        adapter.check_reachable(2.0)
    assert time.monotonic() - started < 2.0


@sqs
def test_local_client_reads_nothing_from_the_users_aws_setup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken ~/.aws/config, an unknown AWS_PROFILE and AWS_RETRY_MODE change nothing locally."""
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text("[default\nnot ini at all\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    adapter = create("boto3+sqs", queue="q")
    adapter.check_reachable(5.0)
    assert adapter.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    adapter.cleanup()


def stubbed_producer(max_open_sec: float,
                     max_entries: int = 10) -> tuple[BatchingProducer, Stubber]:
    client = sqs_client(endpoint_for("boto3+sqs://127.0.0.1:9324"), connect_timeout=1,
                        read_timeout=1, total_max_attempts=1)
    producer = BatchingProducer(client, "http://127.0.0.1:9324/000000000000/q",
                                max_entries=max_entries,
                                max_batch_bytes=MAX_MESSAGE_BYTES, max_open_sec=max_open_sec)
    return producer, Stubber(client)


def test_a_batch_entry_the_broker_refuses_raises() -> None:
    """AWS reports an over-size message of a batch under `Failed`: the producer raises with it."""
    producer, stub = stubbed_producer(max_open_sec=60)
    with stub:
        stub.add_response("send_message_batch", {"Successful": [], "Failed": [{
            "Id": "0", "SenderFault": True, "Code": "InvalidParameterValue",
            "Message": "Message must be shorter than 1048576 bytes."}]})
        producer.send(b"x")
        with pytest.raises(BatchEntryFailed, match=r"refused 1 of 1 .*InvalidParameterValue"):
            producer.flush()
        producer.close()  # the failed batch is not sent again


def test_a_lone_message_goes_once_its_batch_was_open_max_open_sec() -> None:
    """At a low rate a batch never fills: without a time bound a message waited for nine more
    (9 s at 1 msg/s). The timer sends it alone, and its sender is told, with no flush."""
    producer, stub = stubbed_producer(max_open_sec=0.05)
    with stub:
        stub.add_response("send_message_batch", {"Successful": [
            {"Id": "0", "MessageId": "0", "MD5OfMessageBody": "x"}], "Failed": []})
        told: list[BaseException | None] = []
        producer.send_async(b"tick", on_done=told.append)
        wait_for(lambda: told, "the lone message's acknowledgement", timeout=5)
        assert told == [None]
        stub.assert_no_pending_responses()
        producer.close()


def test_a_send_the_timer_sent_and_sqs_refused_raises_at_the_next_send() -> None:
    """send() has no callback: the failure of a batch the timer sent is raised by the next call,
    once, and the message after it is still sent."""
    producer, stub = stubbed_producer(max_open_sec=0.05)
    with stub:
        stub.add_response("send_message_batch", {"Successful": [], "Failed": [{
            "Id": "0", "SenderFault": True, "Code": "InvalidParameterValue",
            "Message": "Message must be shorter than 1048576 bytes."}]})
        stub.add_response("send_message_batch", {"Successful": [
            {"Id": "0", "MessageId": "1", "MD5OfMessageBody": "x"}], "Failed": []})
        producer.send(b"x")
        wait_for(lambda: producer._failure is not None, "the timer's batch to fail", timeout=5)
        with pytest.raises(BatchEntryFailed, match="InvalidParameterValue"):
            producer.send(b"y")
        producer.send(b"z")
        producer.close()
        stub.assert_no_pending_responses()


@sqs
def test_a_message_sent_alone_reaches_the_queue_without_a_flush(
        adapter: Boto3SQSAdapter) -> None:
    """The default variant's producer sends a batch 200 ms after its first message at most."""
    producer = adapter.producer()
    try:
        producer.send(b"alone")
        started = time.monotonic()
        wait_for(lambda: counts(adapter) == (1, 0), "the message in the queue", timeout=5)
        assert time.monotonic() - started < 2
    finally:
        producer.close()
    assert counts(adapter) == (1, 0)  # close() sent nothing more


@sqs
def test_body_over_1_mib_gets_elasticmqs_message_too_long(adapter: Boto3SQSAdapter) -> None:
    """786,432 bytes are exactly 1 MiB of base64 and go; one byte more is MessageTooLong."""
    limit = adapter.size_limit
    assert limit.wire_bytes(LARGEST_FITTING_PAYLOAD) <= limit.max_bytes
    assert limit.wire_bytes(LARGEST_FITTING_PAYLOAD + 1) > limit.max_bytes
    send_all(adapter, [bytes(LARGEST_FITTING_PAYLOAD)])
    with pytest.raises(ClientError) as refused:
        send_all(adapter, [bytes(LARGEST_FITTING_PAYLOAD + 1)])
    error = refused.value.response["Error"]
    assert (error["Code"], error["Message"]) == ("InvalidAttributeValue", "MessageTooLong")
    assert str(refused.value) == ("An error occurred (InvalidAttributeValue) when calling the "
                                  "SendMessageBatch operation: MessageTooLong")
    assert counts(adapter) == (1, 0)


@pytest.fixture(scope="module")
def seed_payloads() -> dict[str, bytes]:
    """The seed's 10,000-record message in both formats, framed as the runner sends it."""
    run_id = uuid.uuid4()
    payloads = {}
    for fmt in ("protobuf", "json"):
        with PayloadBuilder(stock_db_url="sqlite://", fmt=fmt, records=10_000) as builder:
            payloads[fmt] = wrap(run_id, 0, builder.build(0))
    return payloads


@sqs
def test_10000_records_fit_as_protobuf_but_not_as_json(adapter: Boto3SQSAdapter,
                                                       seed_payloads: dict[str, bytes]) -> None:
    """Protobuf (about 496 KB, 662 KB in base64) goes and comes back intact; JSON (about
    1.75 MB, 2.33 MB in base64) is over 1 MiB, as declared and as the broker says."""
    protobuf, json = seed_payloads["protobuf"], seed_payloads["json"]
    limit = adapter.size_limit
    assert 490_000 < len(protobuf) < 500_000 and limit.wire_bytes(len(protobuf)) < 670_000
    assert 1_700_000 < len(json) < 1_800_000 and limit.wire_bytes(len(json)) > 2_300_000
    assert limit.wire_bytes(len(protobuf)) <= limit.max_bytes < limit.wire_bytes(len(json))

    send_all(adapter, [protobuf])
    received = adapter.client.receive_message(QueueUrl=adapter.queue_url, WaitTimeSeconds=5)
    assert [base64.b64decode(m["Body"]) for m in received["Messages"]] == [protobuf]
    with pytest.raises(ClientError, match=r"\(InvalidAttributeValue\).*: MessageTooLong"):
        send_all(adapter, [json])


@sqs
def test_producer_batches_by_ten_and_by_the_1_mib_total(adapter: Boto3SQSAdapter) -> None:
    """25 small messages take 3 SendMessageBatch calls; 3 of 400 KB (533 KB of base64 each, two
    would be over 1 MiB together) take one call each, where a plain batch of 10 would fail."""
    producer = adapter.producer()
    batch_sizes: list[int] = []
    producer.client.meta.events.register(
        "before-parameter-build.sqs.SendMessageBatch",
        lambda params, **_: batch_sizes.append(len(params["Entries"])))
    for _ in range(25):
        producer.send(b"small")
    producer.flush()
    for _ in range(3):
        producer.send(bytes(400_000))
    producer.close()
    assert batch_sizes == [10, 10, 5, 1, 1, 1]
    assert adapter.backlog().waiting == 28


class SQSRun(PairRun):
    def wait_received(self, count: int, timeout: float = WAIT_SEC) -> None:
        """Waits for `count` distinct messages: a redelivered one counts once."""
        wait_for(lambda: len({r.seq for r in self.ledger.poll()}) >= count,
                 f"{count} distinct receipts; consumer log: {self.consumer.log_tail()}", timeout)


@pytest.fixture
def make_run(pair_runs: Callable[..., PairRun]) -> Callable[..., SQSRun]:
    return functools.partial(pair_runs, cls=SQSRun, work_ms=WORK_MS)


@sqs
@pytest.mark.slow
def test_sigterm_finishes_the_message_in_hand_and_returns_the_rest_at_once(
        adapter: Boto3SQSAdapter, make_run) -> None:
    """On SIGTERM the consumer finishes its message, and the rest of the batch it received is
    visible again at once instead of after the visibility timeout."""
    run = make_run(adapter)
    run.send(10)
    run.consumer.start()
    run.wait_received(1)
    time.sleep(INTO_TASK_SEC)  # message 2 of the batch is being worked on
    assert run.consumer.stop(timeout=10) < 2.0
    done = len(run.ledger.poll())
    assert done == 2
    assert counts(adapter) == (10 - done, 0)


@sqs
@pytest.mark.slow
def test_sigkill_mid_task_redelivers_after_the_visibility_timeout(
        adapter: Boto3SQSAdapter, make_run) -> None:
    """SIGKILL leaves the rest of the received batch in flight; a restarted consumer gets
    nothing until the 10 s visibility timeout ends, then every message: none lost. The kill
    lands before the message in hand wrote its receipt, so here nothing is duplicated."""
    timeout_sec = adapter.settings["visibility_timeout_sec"]
    assert timeout_sec == 10
    run = make_run(adapter)
    run.send(10)
    run.consumer.start()
    run.wait_received(3)
    time.sleep(INTO_TASK_SEC)  # the 4th message is being worked on
    run.consumer.kill()
    assert len(run.ledger.poll()) == 3
    assert counts(adapter) == (0, 7)  # one receive took all 10; 3 were deleted
    assert adapter.backlog().waiting == 7  # in flight counts: it will come back

    run.consumer.start()
    run.wait_received(10, timeout=timeout_sec + WAIT_SEC)
    receipts = run.ledger.poll()
    first_received_ns = min(r.received_ns for r in receipts)
    redelivered = sorted(receipts, key=lambda r: r.received_ns)[3:]
    assert min(r.received_ns for r in redelivered) - first_received_ns >= (timeout_sec - 1) * 1e9
    wait_for(lambda: adapter.backlog().waiting == 0, "an empty queue")
    run.consumer.stop(timeout=10)
    result = tally(run.ledger.poll(), expected=10)
    assert (result.lost, result.duplicates, result.corrupt) == ((), (), 0)


class ShortLeaseAdapter(Boto3SQSAdapter):
    """The pair with a 2 s visibility timeout, so the in-process tests below end quickly."""

    variants = (Variant("default", {**Boto3SQSAdapter.variants[0].settings,
                                    "visibility_timeout_sec": 2}),)


@pytest.fixture
def short_lease() -> Iterator[Boto3SQSAdapter]:
    pair = new_adapter(ShortLeaseAdapter)
    pair.prepare()
    yield pair
    pair.client.delete_queue(QueueUrl=pair.queue_url)
    pair.cleanup()


class WorkerDied(Exception):
    """Stands for a crash after the work was done and before the delete was sent."""


@sqs
def test_message_handled_but_not_deleted_is_handled_twice(short_lease: Boto3SQSAdapter) -> None:
    """A consumer that dies after handling, before DeleteMessage, leaves the message to come
    back after the visibility timeout: the at-least-once duplicate."""
    payload = wrap(uuid.uuid4(), 0, b"stock update")
    send_all(short_lease, [payload])
    handled: list[bytes] = []
    stopping = threading.Event()

    def handle_then_die(message: bytes) -> None:
        handled.append(message)
        raise WorkerDied

    with pytest.raises(WorkerDied):
        short_lease.consume(handle_then_die, stopping)
    died = time.monotonic()
    assert counts(short_lease) == (0, 1)

    def handle_then_stop(message: bytes) -> None:
        handled.append(message)
        stopping.set()

    bound = threading.Timer(WAIT_SEC, stopping.set)  # ends the loop should nothing come back
    bound.start()
    try:
        short_lease.consume(handle_then_stop, stopping)
    finally:
        bound.cancel()
    assert handled == [payload, payload]
    assert time.monotonic() - died >= 1.0  # it waited out (most of) the 2 s timeout
    assert short_lease.backlog().waiting == 0


@sqs
def test_delete_after_the_timeout_ran_out_is_reported_not_raised(
        short_lease: Boto3SQSAdapter, capsys: pytest.CaptureFixture[str]) -> None:
    """Handling that outlives the visibility timeout lets another receive take the message;
    ElasticMQ then refuses the first receipt handle (ReceiptHandleIsInvalid). The consumer says
    so and goes on: the message is still in the queue, held by the second receiver."""
    payload = wrap(uuid.uuid4(), 0, b"stock update")
    send_all(short_lease, [payload])
    stopping = threading.Event()
    other = short_lease._new_client()

    def slow_handle(message: bytes) -> None:
        assert unwrap(message).seq == 0
        taken = other.receive_message(QueueUrl=short_lease.queue_url, WaitTimeSeconds=5)
        assert len(taken.get("Messages", [])) == 1  # the timeout ran out during the work
        stopping.set()

    short_lease.consume(slow_handle, stopping)
    other.close()
    assert "outlived its visibility timeout and will be delivered again" in capsys.readouterr().err
    assert counts(short_lease) == (0, 1)


@sqs
@pytest.mark.parametrize("pair", ["boto3+sqs", "celery+sqs"])
def test_a_queue_the_broker_lost_holds_nothing(pair: str) -> None:
    """ElasticMQ keeps queues in memory: after a restart the queue is gone, and the engine's
    backlog check says it holds nothing instead of failing (the run then ends "broker empty")."""
    adapter = create(f"{pair}://127.0.0.1:9324", queue=f"qbtest-{uuid.uuid4().hex[:12]}")
    adapter.prepare()
    client = new_adapter().client
    client.delete_queue(QueueUrl=client.get_queue_url(QueueName=adapter.queue)["QueueUrl"])
    try:
        backlog = adapter.backlog()
    finally:
        adapter.cleanup()
    assert (backlog.waiting, backlog.detail) == (0, QUEUE_GONE.detail)
