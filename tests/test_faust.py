"""faust's own behaviour, seen through `faust worker` started the way the runner starts it.

The cross-pair contract suite lives elsewhere; these tests pin what is particular to faust:
acks after the handler, commits every 2.8 s, so SIGKILL repeats what ran since the last commit
and loses nothing (in both variants); SIGTERM finishes the event in hand and commits; a handler
that raises is not retried.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faust.exceptions import ProducerSendError
from kafka import KafkaAdminClient

from queuebench.adapters import create
from queuebench.adapters.faust import (
    FAUST_SETTINGS,
    MAX_REQUEST_BYTES,
    SIZE_CHECK_KEY,
    FaustAdapter,
    record_wire_bytes,
    worker_app,
)
from queuebench.errors import UsageError
from queuebench.experiments.consumer import ConsumerProcess
from queuebench.experiments.handler import ConsumerConfig
from queuebench.experiments.ledger import LedgerReader, tally, wrap

WAIT_SEC = 30.0  # bound on every wait; the worker starts in about 2.3 s, a rejoin takes ~10 s
COMMIT_WAIT_SEC = 3 * float(FAUST_SETTINGS["broker_commit_interval"])

kafka = pytest.mark.broker("kafka")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_SEC) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.005)


def committed_offset(adapter: FaustAdapter) -> int:
    """The group's committed offset: on a fresh one-partition topic, the messages it counts done."""
    return adapter.offsets()[2] or 0


class Run:
    """One run's messages, its `faust worker` process and its ledger."""

    def __init__(self, adapter: FaustAdapter, tmp_path: Path, *, work_ms: float) -> None:
        self.adapter = adapter
        self.run_id = uuid.uuid4()
        self.ledger = LedgerReader(tmp_path / "ledger", str(self.run_id))
        self.consumer = ConsumerProcess(adapter, ledger_dir=tmp_path / "ledger",
                                        work_ms=work_ms, log_path=tmp_path / "consumer.log")
        self.sent = 0

    def send(self, count: int, *, extra: tuple[bytes, ...] = ()) -> None:
        producer = self.adapter.producer()
        try:
            for raw in extra:
                producer.send(raw)
            for _ in range(count):
                producer.send(wrap(self.run_id, self.sent, b"stock update"), key=str(self.sent))
                self.sent += 1
            producer.flush()
        finally:
            producer.close()

    def seqs(self) -> list[int]:
        return [r.seq for r in self.ledger.poll()]

    def wait_received(self, count: int) -> None:
        def enough() -> bool:
            self.consumer.check_alive()
            return len(self.ledger.poll()) >= count
        wait_for(enough, f"{count} receipts; worker log: {self.consumer.log_tail()}")

    def wait_committed(self, offset: int, timeout: float = COMMIT_WAIT_SEC) -> None:
        wait_for(lambda: committed_offset(self.adapter) >= offset,
                 f"a commit of offset {offset}", timeout=timeout)


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []
    adapters: list[FaustAdapter] = []

    def make(work_ms: float, variant: str = "default") -> Run:
        adapter = create("faust+kafka", queue=f"qbtest-faust-{uuid.uuid4().hex[:8]}",
                         variant=variant)
        adapter.prepare()
        adapters.append(adapter)
        runs.append(Run(adapter, tmp_path / f"run{len(runs)}", work_ms=work_ms))
        return runs[-1]

    yield make
    for run in runs:
        run.consumer.ensure_stopped()
    for adapter in adapters:
        adapter.cleanup()
    if adapters:  # leave the shared broker as found: our topics and faust's leader topics
        admin = KafkaAdminClient(bootstrap_servers=adapters[0].address)
        try:
            admin.delete_topics([name for a in adapters
                                 for name in (a.queue, f"{a.group}-__assignor-__leader")],
                                raise_errors=False)
            admin.delete_groups([a.group for a in adapters])
        finally:
            admin.close()


def test_worker_app_is_one_raw_agent_with_a_group_per_queue(tmp_path: Path) -> None:
    """The worker's app is named after the queue (its consumer group), keeps its datadir in the
    ledger folder and runs one agent over the queue's topic with raw bytes."""
    config = ConsumerConfig("faust+kafka://127.0.0.1:9092", "qb-x-001", "default",
                            str(tmp_path / "ledger"), 0.0)
    app = worker_app(config)
    assert app.conf.id == "queuebench-qb-x-001"
    assert app.conf.datadir == tmp_path / "ledger" / "faust-data"
    assert app.conf.broker_session_timeout == 10.0
    assert app.conf.broker_commit_interval == 2.8
    [agent] = app.agents.values()
    [topic] = agent.channel.topics  # faust's Topic over our queue
    assert (topic, agent.channel.value_serializer, agent.concurrency) == ("qb-x-001", "raw", 1)
    argv = FaustAdapter(config.pair_url, queue="q").consumer_argv()
    assert argv[1:6] == ["-m", "faust", "-A", "queuebench.adapters.faust_worker", "worker"]
    assert "--without-web" in argv
    with pytest.raises(UsageError):
        FaustAdapter("faust+kafka://127.0.0.1:9092/extra", queue="q")


@kafka
def test_record_over_max_request_size_fails_with_faust_error(make_run) -> None:
    """faust's producer refuses a record whose estimate passes 1,000,000 bytes, with the
    error the adapter declares; one byte less is sent."""
    run = make_run(work_ms=0)
    framing = record_wire_bytes(MAX_REQUEST_BYTES) - MAX_REQUEST_BYTES  # 92 bytes near 1 MB
    largest = MAX_REQUEST_BYTES - framing
    assert record_wire_bytes(largest) == MAX_REQUEST_BYTES
    producer = run.adapter.producer()
    try:
        producer.send(bytes(largest), key=SIZE_CHECK_KEY.decode())
        producer.flush()
        with pytest.raises(ProducerSendError) as caught:
            producer.send(bytes(largest + 1), key=SIZE_CHECK_KEY.decode())
    finally:
        producer.close()
    error = f"{type(caught.value).__module__}.{type(caught.value).__name__}: {caught.value}"
    expected = FaustAdapter.size_limit.error.replace("N bytes", f"{MAX_REQUEST_BYTES + 1} bytes")
    assert error == expected
    assert run.adapter.backlog().waiting == 1


@kafka
def test_worker_processes_every_message_then_commits(make_run) -> None:
    """`faust worker`, started through ConsumerProcess, hands each message to the handler once
    and commits the offsets, so the broker ends with nothing waiting."""
    run = make_run(work_ms=0)
    run.send(15)
    run.consumer.start()
    run.wait_received(15)
    run.wait_committed(15)
    assert run.consumer.stop() < 5
    result = tally(run.ledger.poll(), expected=15)
    assert (result.lost, result.duplicates, result.corrupt) == ((), (), 0)


@kafka
def test_sigterm_finishes_the_event_in_hand_and_commits_it(make_run) -> None:
    """SIGTERM waits for the running handler, commits, and exits: what ran is committed, the
    rest waits in the topic."""
    run = make_run(work_ms=1000)
    run.send(6)
    run.consumer.start()
    run.wait_received(1)
    time.sleep(0.1)  # message 1 is now in the handler
    assert 0.9 <= run.consumer.stop(timeout=15) < 5  # waited for it (and mode's fixed 1 s)
    assert run.seqs() == [0, 1]
    assert committed_offset(run.adapter) == 2
    assert run.adapter.backlog().waiting == 4


@kafka
@pytest.mark.parametrize("variant", ["default", "exactly-once"])
def test_sigkill_repeats_what_ran_since_the_last_commit(make_run, variant: str) -> None:
    """SIGKILL loses nothing; the restarted worker resumes from the committed offset, so the
    messages handled after the last commit run twice, in both variants (Kafka transactions do
    not cover the handler's own effects)."""
    run = make_run(work_ms=300, variant=variant)
    run.send(8)
    run.consumer.start()
    run.wait_received(2)  # well before the first commit, 2.8 s after the consumer started
    run.consumer.kill()
    ran_before_kill = run.seqs()
    committed = committed_offset(run.adapter)
    assert ran_before_kill == [0, 1] and committed < 2

    run.consumer.start()  # gets the partition once the killed member's session (10 s) expires
    run.wait_received(8 + 2 - committed)
    run.wait_committed(8)
    run.consumer.stop()
    result = tally(run.ledger.poll(), expected=8)
    assert result.lost == ()
    assert result.duplicates == tuple(range(committed, 2))


@kafka
def test_a_handler_that_raises_is_not_retried(make_run) -> None:
    """A message whose handler raises crashes the agent; faust restarts the agent, carries on
    with the next message and commits past the failed one (acked when the garbage collector
    finalizes the crashed stream, seconds later)."""
    run = make_run(work_ms=0)
    run.send(3, extra=(b"not a queuebench envelope",))
    run.consumer.start()
    run.wait_received(3)
    run.wait_committed(4, timeout=WAIT_SEC)  # offset 0, the bad one, committed as done
    run.consumer.stop()
    assert run.seqs() == [0, 1, 2]
    assert "Restarting dead <Agent" in run.consumer.log_path.read_text()
