"""dramatiq's own behaviour on Redis and RabbitMQ, seen through the `dramatiq` command.

The cross-pair contract suite lives elsewhere; these tests pin what is particular to dramatiq:
acks after the task, so SIGKILL loses nothing (RabbitMQ redelivers at once, Redis after the
heartbeat timeout); SIGTERM finishes the task in hand and gives back the prefetched one; the
payload travels as base64 in JSON; RabbitMQ's refusal of a message over 128 MiB is reported.
"""

from __future__ import annotations

import base64
import functools
import json
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from queuebench import adapters
from queuebench.adapters.base import base64_size
from queuebench.adapters.dramatiq import (
    JSON_FRAMING_BYTES,
    REDIS_MESSAGE_ID_BYTES,
    REDIS_NAMESPACE,
    DramatiqAdapter,
    PublishRefused,
    amqp_url,
)
from queuebench.engine.ledger import tally
from queuebench.worker.envelope import unwrap, wrap
from tests.harness import PairRun, wait_for

WORK_MS = 300.0  # long enough for a signal to land mid-task
INTO_TASK_SEC = 0.05  # after a receipt, the next message is running and one more is prefetched
RABBITMQ_MAX_MESSAGE_SIZE = 128 * 1024 * 1024  # RabbitMQ 3.10's default max_message_size
PAYLOAD = bytes(range(256))  # not UTF-8


def queue_name() -> str:
    # 19 characters: with dramatiq's 174 bytes of framing, the size test then lands on limit + 1.
    return f"qbtest{uuid.uuid4().hex[:13]}"


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.broker("redis")),
                        pytest.param("rabbitmq", marks=pytest.mark.broker("rabbitmq"))])
def adapter(request: pytest.FixtureRequest) -> Iterator[DramatiqAdapter]:
    pair = adapters.create(f"dramatiq+{request.param}", queue=queue_name())
    pair.prepare()
    yield pair
    pair.prepare()  # leaves nothing behind on a shared broker, a killed worker's ack set included
    pair.cleanup()


class DramatiqRun(PairRun):
    """A run that sends bytes that are not UTF-8 and reads receipts back in the order written."""

    def send(self, count: int, payload: bytes = PAYLOAD) -> None:
        super().send(count, payload)

    def seqs(self) -> list[int]:
        """Sequence numbers in the order their receipts were written."""
        return [r.seq for r in sorted(self.ledger.poll(), key=lambda r: r.received_ns)]


@pytest.fixture
def make_run(pair_runs: Callable[..., PairRun]) -> Callable[..., DramatiqRun]:
    return functools.partial(pair_runs, cls=DramatiqRun, work_ms=WORK_MS)


def redis_queued_seqs(adapter: DramatiqAdapter) -> list[int]:
    """The sequence numbers in dramatiq's Redis list for the queue, head first."""
    client = adapter.dramatiq_broker.client
    key = f"{REDIS_NAMESPACE}:{adapter.queue}"
    ids = client.lrange(key, 0, -1)
    bodies = client.hmget(f"{key}.msgs", ids) if ids else []
    return [unwrap(base64.b64decode(json.loads(body)["args"][0])).seq for body in bodies]


def test_worker_command_and_urls() -> None:
    """The consumer is dramatiq's CLI, one process and one thread, on the experiment's queue."""
    adapter = adapters.create("dramatiq+redis", queue="qb-exp-001")
    argv = adapter.consumer_argv()
    assert argv[1:4] == ["-m", "dramatiq", "queuebench.adapters.dramatiq_worker:broker"]
    assert argv[4:] == ["--processes", "1", "--threads", "1", "--worker-shutdown-timeout",
                        "600000", "--queues", "qb-exp-001"]
    assert adapter.settings["queue_prefetch"] == 2
    assert adapter.settings["max_retries"] == 20
    assert amqp_url("guest:guest@127.0.0.1:5672//") == "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert amqp_url("u:p@h:5672/prod") == "amqp://u:p@h:5672/prod"


@pytest.mark.broker("redis")
def test_redis_stores_the_payload_as_base64_json_of_the_declared_size() -> None:
    """Bytes go as base64 text; the stored message is exactly the size the framing predicts."""
    adapter = adapters.create("dramatiq+redis", queue=queue_name())
    adapter.prepare()
    payload = wrap(uuid.uuid4(), 0, bytes(range(256)) * 40)
    producer = adapter.producer()
    producer.send(payload)
    producer.close()
    client = adapter.dramatiq_broker.client
    (body,) = client.hvals(f"{REDIS_NAMESPACE}:{adapter.queue}.msgs")
    assert base64.b64decode(json.loads(body)["args"][0]) == payload
    assert len(body) == (base64_size(len(payload)) + JSON_FRAMING_BYTES
                         + REDIS_MESSAGE_ID_BYTES + len(adapter.queue))
    assert adapter.size_limit.wire_bytes(len(payload)) >= len(body)
    assert adapter.backlog().waiting == 1
    adapter.prepare()
    assert adapter.backlog().waiting == 0
    adapter.cleanup()


def test_worker_processes_every_message(adapter: DramatiqAdapter, make_run) -> None:
    """The dramatiq command hands each wrapped message to the handler once, then acks it."""
    run = make_run(adapter, work_ms=0)
    run.send(12)
    run.consumer.start()
    run.wait_received(12)
    run.consumer.stop(timeout=10)
    result = tally(run.ledger.poll(), expected=12)
    assert (result.lost, result.duplicates, result.corrupt) == ((), (), 0)
    assert adapter.backlog().waiting == 0


def test_sigterm_finishes_the_task_in_hand_and_gives_back_the_prefetched_one(
        adapter: DramatiqAdapter, make_run) -> None:
    """SIGTERM is taken within a second (the worker keeps working meanwhile); then the running
    task completes and is acked, the prefetched one goes back to the queue, nothing is lost."""
    run = make_run(adapter)
    run.send(10)
    run.consumer.start()
    run.wait_received(1)
    time.sleep(INTO_TASK_SEC)
    assert run.consumer.stop(timeout=10) < 1 + WORK_MS / 1000 + 2
    done = len(run.seqs())
    assert 2 <= done <= 8, run.seqs()  # at least the task in hand, at most about a second more
    assert run.seqs() == list(range(done))
    assert adapter.backlog().waiting == 10 - done  # what was prefetched is held by no one now
    if adapter.broker == "redis":  # all back in the list (a prefetched one at the tail)
        assert sorted(redis_queued_seqs(adapter)) == list(range(done, 10))


def test_sigkill_mid_task_redelivers_what_the_worker_held(adapter: DramatiqAdapter,
                                                          make_run) -> None:
    """SIGKILL loses nothing: the running message (and a prefetched one) come back, on RabbitMQ
    at once and in place, on Redis after heartbeat_timeout and behind the rest; the killed
    attempt wrote no receipt, so there is no duplicate either."""
    run = make_run(adapter)
    run.send(6)
    run.consumer.start()
    run.wait_received(2)
    time.sleep(INTO_TASK_SEC)  # message 2 is running; 3 is prefetched, or soon will be
    ready_before_kill = adapter.backlog().waiting
    run.consumer.kill()
    killed_ns = time.time_ns()
    assert run.seqs() == [0, 1]
    if adapter.broker == "rabbitmq":  # message_count leaves out what the consumer held unacked
        assert ready_before_kill in (2, 3)
    else:  # the Redis consumer polls, so the prefetch slot may still have been empty
        queued = redis_queued_seqs(adapter)
        held = sorted(set(range(2, 6)) - set(queued))  # in the dead worker's ack set
        assert held in ([2], [2, 3]) and queued == [s for s in range(2, 6) if s not in held]
    wait_for(lambda: adapter.backlog().waiting == 4, "the held messages counted as waiting")

    run.consumer.start()
    run.wait_received(6)
    if adapter.broker == "rabbitmq":  # requeued at once, in their old place
        assert run.seqs() == [0, 1, 2, 3, 4, 5]
    else:  # back only once the dead worker's heartbeat is stale, behind the rest, in set order
        assert run.seqs()[:6 - len(held)] == [0, 1, *queued]
        assert sorted(run.seqs()[6 - len(held):]) == held
        receipts = {r.seq: r.received_ns for r in run.ledger.poll()}
        waited_ms = (min(receipts[seq] for seq in held) - killed_ns) / 1e6
        heartbeat_ms = adapter.settings["redis_heartbeat_timeout_ms"]
        assert heartbeat_ms - 500 < waited_ms < heartbeat_ms + 5_000
    wait_for(lambda: adapter.backlog().waiting == 0, "an empty queue")
    run.consumer.stop(timeout=10)
    result = tally(run.ledger.poll(), expected=6)
    assert (result.lost, result.duplicates) == ((), ())


@pytest.mark.broker("rabbitmq")
def test_rabbitmq_refuses_a_message_just_over_128_mib() -> None:
    """A JSON message of max_message_size + 1 bytes is refused with RabbitMQ's own 406 error,
    and the producer raises it instead of losing the message silently."""
    adapter = adapters.create("dramatiq+rabbitmq", queue=queue_name())
    adapter.prepare()
    framing = JSON_FRAMING_BYTES + len(adapter.queue)
    base64_chars = RABBITMQ_MAX_MESSAGE_SIZE + 1 - framing
    assert base64_chars % 4 == 0  # the queue name's length was chosen for this
    payload = bytes(base64_chars // 4 * 3)
    assert adapter.size_limit.wire_bytes(len(payload)) > RABBITMQ_MAX_MESSAGE_SIZE
    producer = adapter.producer()
    try:
        with pytest.raises(PublishRefused) as refused:
            producer.send(payload)
            producer.flush()
    finally:
        producer.close()
    assert (f"ChannelClosedByBroker: (406) 'PRECONDITION_FAILED - message size "
            f"{RABBITMQ_MAX_MESSAGE_SIZE + 1} is larger than configured max size "
            f"{RABBITMQ_MAX_MESSAGE_SIZE}'") in str(refused.value)
    assert adapter.backlog().waiting == 0
    adapter.cleanup()
