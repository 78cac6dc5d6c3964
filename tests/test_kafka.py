"""The plain Kafka clients' own behaviour on the real broker, seen the way the runner sees it.

The cross-pair contract suite lives elsewhere; these tests pin what is particular to Kafka: each
client's size limit and exact error, where each commits on a graceful stop, and what a SIGKILL
does: kafka-python repeats what was handled since its last auto-commit and loses nothing, while
librdkafka's auto-commit can commit the message in hand before its work ends, which then is lost.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import confluent_kafka
import kafka
import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from queuebench.adapters import confluent, kafka_python
from queuebench.adapters.confluent import MESSAGE_FRAMING_BYTES, ConfluentKafkaAdapter
from queuebench.adapters.kafka_common import (
    BROKER_MESSAGE_MAX_BYTES,
    SESSION_TIMEOUT_MS,
    KafkaPairBase,
    bootstrap_servers,
)
from queuebench.adapters.kafka_python import RECORD_BATCH_FRAMING_BYTES, KafkaPythonAdapter
from queuebench.engine.client_logs import client_logs_in
from queuebench.engine.consumer import ConsumerProcess
from queuebench.engine.ledger import tally
from queuebench.faults.pause import PauseFault
from queuebench.services import service
from tests.harness import PairRun, discard, wait_for

BOOTSTRAP = "127.0.0.1:9092"
# Bound on every wait: a restarted consumer waits for the killed member's session to end.
WAIT_SEC = SESSION_TIMEOUT_MS / 1000 + 30
WORK_MS = 400.0
INTO_TASK_SEC = 0.1  # after a receipt, the next message is being handled
PAIRS = {"kafka-python": KafkaPythonAdapter, "confluent-kafka": ConfluentKafkaAdapter}
KEY = "0"  # one byte: the limits below are for a one-byte key
FROZEN_SEC = 20.0  # the broker frozen this long: well past a bounded close of 1 s


def make_adapter(cls: type[KafkaPairBase], variant: str = "default") -> KafkaPairBase:
    adapter = cls(f"{cls.scheme}://{BOOTSTRAP}", queue=f"qb-test-{uuid.uuid4().hex[:10]}",
                  variant=variant)
    adapter.prepare()
    return adapter


@pytest.fixture
def adapters() -> Iterator[Callable[..., KafkaPairBase]]:
    """Makes prepared adapters; drops each at teardown, whether the test passed or not."""
    made: list[KafkaPairBase] = []

    def make(cls: type[KafkaPairBase]) -> KafkaPairBase:
        made.append(make_adapter(cls))
        return made[-1]

    yield make
    for adapter in made:
        discard(adapter)


class KafkaRun(PairRun):
    """A run whose consumer is a new process, with a log of its own, at each restart."""

    def __init__(self, adapter: KafkaPairBase, folder: Path, *, work_ms: float) -> None:
        super().__init__(adapter, folder, work_ms=work_ms)
        self.folder = folder
        self.consumers: list[ConsumerProcess] = []

    def new_consumer(self, work_ms: float = WORK_MS) -> ConsumerProcess:
        self.consumer = ConsumerProcess(
            self.adapter, ledger_dir=self.folder / "ledger", work_ms=work_ms,
            log_path=self.folder / f"consumer-{len(self.consumers)}.log")
        self.consumers.append(self.consumer)
        return self.consumer

    def wait_received(self, count: int, timeout: float = WAIT_SEC) -> None:
        super().wait_received(count, timeout)

    def close(self) -> None:
        for process in self.consumers:
            process.ensure_stopped()
        discard(self.adapter)


@pytest.fixture
def make_run(pair_runs: Callable[..., PairRun]) -> Callable[..., KafkaRun]:
    def make(cls: type[KafkaPairBase], variant: str = "default") -> KafkaRun:
        return pair_runs(make_adapter(cls, variant), cls=KafkaRun)

    return make


def test_bootstrap_servers_come_from_the_url() -> None:
    """The address part of the pair URL is the bootstrap list, several servers allowed."""
    assert bootstrap_servers("kafka-python+kafka://h1:9092,h2:9093") == "h1:9092,h2:9093"
    assert bootstrap_servers("confluent-kafka+kafka://127.0.0.1:9092/") == "127.0.0.1:9092"


def test_kafka_python_default_variant_is_the_library_default() -> None:
    """Only offset reset and the session timeout differ from kafka-python's own defaults."""
    library = kafka.KafkaConsumer.DEFAULT_CONFIG
    settings = KafkaPythonAdapter.find_variant("default").settings
    for key in ("enable_auto_commit", "auto_commit_interval_ms", "heartbeat_interval_ms",
                "max_poll_interval_ms", "max_poll_records"):
        assert settings[key] == library[key], key
    assert (library["auto_offset_reset"], settings["auto_offset_reset"]) == ("latest", "earliest")
    assert library["session_timeout_ms"] == 45_000 and settings["session_timeout_ms"] == 10_000
    producer = kafka.KafkaProducer.DEFAULT_CONFIG
    assert (producer["acks"], producer["enable_idempotence"], producer["linger_ms"],
            producer["max_request_size"]) == (-1, True, 0, 1_048_576)


@pytest.mark.broker("kafka")
def test_kafka_python_refuses_a_record_over_max_request_size_before_sending(adapters) -> None:
    """kafka-python raises MessageSizeTooLargeError in send(); the broker never sees it."""
    adapter = adapters(KafkaPythonAdapter)
    largest = 1_048_576 - RECORD_BATCH_FRAMING_BYTES - len(KEY)
    producer = adapter.producer()
    try:
        with pytest.raises(MessageSizeTooLargeError) as error:
            producer.send(b"x" * (largest + 1), key=KEY)
        producer.send(b"x" * largest, key=KEY)
        producer.flush()
    finally:
        producer.close()
    assert str(error.value) == (
        "[Error 10] MessageSizeTooLargeError: The message is 1048577 bytes when serialized which "
        "is larger than the maximum request size you have configured with the max_request_size "
        "configuration")
    assert adapter.backlog().waiting == 1  # only the one that fits
    assert adapter.size_limit.wire_bytes(largest + 1) > adapter.size_limit.max_bytes


def test_librdkafka_logs_to_the_runs_clients_log_not_to_stderr(monkeypatch, tmp_path, capfd):
    """The run's producer gets no broker: librdkafka's "Connect ... failed" goes through
    Python's logging into clients.log. Before, librdkafka wrote it to the run's stderr itself."""
    monkeypatch.setattr(confluent, "CONNECT_TIMEOUT_SEC", 1.0)
    with client_logs_in(tmp_path), pytest.raises(confluent_kafka.KafkaException):
        confluent.ConfluentProducer("127.0.0.1:1", "never")
    assert "rdkafka" not in capfd.readouterr().err


@contextlib.contextmanager
def frozen_broker() -> Iterator[threading.Event]:
    """The Kafka broker frozen, as the frozen-worker fault freezes a consumer (its session is
    the broker's), for FROZEN_SEC or until the block ends; the event is set once it is
    continued."""
    frozen = PauseFault([service("kafka").pid()])
    continued = threading.Event()

    def carry_on() -> None:
        frozen.heal()
        continued.set()

    frozen.inject()
    thaw = threading.Timer(FROZEN_SEC, carry_on)
    thaw.start()
    try:
        yield continued
    finally:
        thaw.cancel()
        carry_on()


@pytest.mark.broker("kafka")
def test_kafka_python_close_ends_on_its_timeout_against_a_frozen_broker(monkeypatch,
                                                                        adapters) -> None:
    """kafka-python 3's close() with no timeout waited for over ten minutes on a broker 500
    consumers had overloaded, and with one it raises before its own force close, leaving its
    I/O thread retrying. Against a frozen broker, close() ends before the broker is back."""
    monkeypatch.setattr(kafka_python, "FLUSH_TIMEOUT_SEC", 1.0)
    producer = adapters(KafkaPythonAdapter).producer()
    with frozen_broker() as continued:
        for _ in range(100):
            producer.send(b"x" * 1000, key=KEY)
        producer.close()
        closed_while_frozen = not continued.is_set()
    assert closed_while_frozen
    assert not producer._producer._sender.is_alive()


@pytest.mark.broker("kafka")
def test_kafka_python_flush_that_times_out_says_what_was_not_acknowledged(monkeypatch,
                                                                          adapters) -> None:
    """An error row read "KafkaTimeoutError: Timeout waiting for future"."""
    monkeypatch.setattr(kafka_python, "FLUSH_TIMEOUT_SEC", 1.0)
    producer = adapters(KafkaPythonAdapter).producer()
    try:
        with frozen_broker(), pytest.raises(
                KafkaTimeoutError, match="not acknowledged by the broker within 1 s"):
            producer.send(b"x", key=KEY)
            producer.flush()
    finally:
        producer.close()


@pytest.mark.broker("kafka")
def test_confluent_refuses_a_message_over_message_max_bytes_before_sending(adapters) -> None:
    """librdkafka's limit is 1,000,000 bytes; produce() raises MSG_SIZE_TOO_LARGE at once."""
    adapter = adapters(ConfluentKafkaAdapter)
    largest = 1_000_000 - MESSAGE_FRAMING_BYTES - len(KEY)
    producer = adapter.producer()
    try:
        with pytest.raises(confluent_kafka.KafkaException) as error:
            producer.send(b"x" * (largest + 1), key=KEY)
        producer.send(b"x" * largest, key=KEY)
        producer.flush()
    finally:
        producer.close()
    kafka_error = error.value.args[0]
    assert kafka_error.code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE
    assert kafka_error.str() == "Unable to produce message: Broker: Message size too large"
    assert adapter.backlog().waiting == 1
    assert adapter.size_limit.wire_bytes(largest + 1) > adapter.size_limit.max_bytes


@pytest.mark.broker("kafka")
def test_raising_only_the_client_limit_meets_the_broker_limit(adapters) -> None:
    """Over the broker's message.max.bytes (1,048,588) the broker refuses with error 10."""
    adapter = adapters(KafkaPythonAdapter)
    value = b"x" * BROKER_MESSAGE_MAX_BYTES
    producer = kafka.KafkaProducer(bootstrap_servers=BOOTSTRAP, max_request_size=2_000_000)
    try:
        with pytest.raises(MessageSizeTooLargeError, match=r"^\[Error 10\]"):
            producer.send(adapter.queue, value).get(timeout=30)
    finally:
        producer.close()
    failures = []
    confluent = confluent_kafka.Producer({"bootstrap.servers": BOOTSTRAP,
                                          "message.max.bytes": 2_000_000})
    confluent.produce(adapter.queue, value, on_delivery=lambda err, _msg: failures.append(err))
    assert confluent.flush(30) == 0
    assert [str(e) for e in failures] == [
        'KafkaError{code=MSG_SIZE_TOO_LARGE,val=10,str="Broker: Message size too large"}']
    assert adapter.backlog().waiting == 0


@pytest.mark.broker("kafka")
@pytest.mark.parametrize("variant", ["default", "commit-after"])
@pytest.mark.parametrize("library", list(PAIRS))
def test_graceful_stop_commits_exactly_what_was_handled(library, variant, make_run) -> None:
    """SIGTERM mid-batch: the message in hand finishes and the commit covers no more than that."""
    run = make_run(PAIRS[library], variant)
    run.send(6)
    consumer = run.new_consumer()
    consumer.start()
    run.wait_received(2)
    consumer.stop(timeout=30)
    handled = run.seqs()
    assert handled == list(range(len(handled))) and 2 <= len(handled) < 6
    backlog = run.adapter.backlog()
    assert backlog.waiting == 6 - len(handled), backlog.detail
    assert f"committed offset {len(handled)} " in backlog.detail


@pytest.mark.slow
@pytest.mark.broker("kafka")
def test_kafka_python_kill_repeats_what_was_handled_since_the_last_auto_commit(make_run) -> None:
    """SIGKILL: records handled since the last auto-commit come again; nothing is lost."""
    run = make_run(KafkaPythonAdapter)
    run.send(3)
    first = run.new_consumer()
    first.start()
    run.wait_received(3)
    # Idle polls auto-commit within 5 s: the group's offset reaches 3.
    wait_for(lambda: run.adapter.backlog().waiting == 0, "the auto-commit of the first three")
    run.send(4)  # seqs 3..6
    run.wait_received(5)  # 3 and 4 handled
    time.sleep(INTO_TASK_SEC)  # 5 is in hand
    first.kill()
    assert run.seqs() == [0, 1, 2, 3, 4]
    # kafka-python commits only inside poll(), and not within 5 s of the last commit.
    assert run.adapter.backlog().waiting == 4

    second = run.new_consumer()
    second.start()
    wait_for(lambda: 6 in run.seqs(), f"seq 6 after the restart; log: {second.log_tail()}",
             WAIT_SEC)
    second.stop(timeout=30)
    result = tally(run.ledger.poll(), expected=7)
    assert (result.lost, result.duplicates) == ((), (3, 4))
    assert run.adapter.backlog().waiting == 0


@pytest.mark.slow
@pytest.mark.broker("kafka")
def test_confluent_auto_commit_can_commit_the_message_in_hand_and_lose_it(make_run) -> None:
    """librdkafka stores the offset as poll() returns the message and commits it in the
    background: killed after that commit but before the work ends, the message is never seen
    again."""
    run = make_run(ConfluentKafkaAdapter)
    run.send(1)
    slow = run.new_consumer(work_ms=8_000)  # longer than the 5 s auto-commit interval
    slow.start()
    wait_for(lambda: run.adapter.backlog().waiting == 0, "the auto-commit of message 0")
    slow.kill()
    assert run.seqs() == []  # killed in the middle of message 0's work

    fast = run.new_consumer(work_ms=0)
    fast.start()
    run.send(1)  # seq 1 comes after seq 0 in the partition
    wait_for(lambda: 1 in run.seqs(), f"seq 1 after the restart; log: {fast.log_tail()}",
             WAIT_SEC)
    fast.stop(timeout=30)
    assert tally(run.ledger.poll(), expected=2).lost == (0,)
