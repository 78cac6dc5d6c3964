"""faust's own behaviour, seen through `faust worker` started the way the runner starts it.

The cross-pair contract suite lives elsewhere; these tests pin what is particular to faust:
acks after the handler, commits every 2.8 s, so SIGKILL repeats what ran since the last commit
and loses nothing (in both variants); SIGTERM finishes the event in hand and commits; a handler
that raises is not retried.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
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
from queuebench.engine.ledger import tally
from queuebench.errors import UsageError
from queuebench.worker.handler import ConsumerConfig
from tests.harness import WAIT_SEC, PairRun, send_all, wait_for

COMMIT_WAIT_SEC = 3 * float(FAUST_SETTINGS["broker_commit_interval"])

kafka = pytest.mark.broker("kafka")


def committed_offset(adapter: FaustAdapter) -> int:
    """The group's committed offset: on a fresh one-partition topic, the messages it counts done."""
    return adapter.offsets()[2] or 0


class FaustRun(PairRun):
    """A run on a topic of its own, which it deletes when closed."""

    def send(self, count: int, payload: bytes = b"stock update", *,
             extra: tuple[bytes, ...] = ()) -> None:
        """`extra`, raw messages outside the envelope, go first."""
        if extra:
            send_all(self.adapter, extra)
        super().send(count, payload)

    def seqs(self) -> list[int]:
        """Sequence numbers in the ledger's order."""
        return [r.seq for r in self.ledger.poll()]

    def wait_received(self, count: int, timeout: float = WAIT_SEC) -> None:
        def enough() -> bool:
            self.consumer.check_alive()
            return self.received() >= count
        wait_for(enough, f"{count} receipts; worker log: {self.consumer.log_tail()}", timeout)

    def wait_committed(self, offset: int, timeout: float = COMMIT_WAIT_SEC) -> None:
        wait_for(lambda: committed_offset(self.adapter) >= offset,
                 f"a commit of offset {offset}", timeout=timeout)

    def close(self) -> None:
        super().close()
        self.adapter.cleanup()
        # Leave the shared broker as found: our topic and faust's leader topic, and the group.
        admin = KafkaAdminClient(bootstrap_servers=self.adapter.address)
        try:
            admin.delete_topics([self.adapter.queue, f"{self.adapter.group}-__assignor-__leader"],
                                raise_errors=False)
            admin.delete_groups([self.adapter.group])
        finally:
            admin.close()


@pytest.fixture
def make_run(pair_runs: Callable[..., PairRun]) -> Callable[..., FaustRun]:
    def make(work_ms: float, variant: str = "default") -> FaustRun:
        adapter = create("faust+kafka", queue=f"qbtest-faust-{uuid.uuid4().hex[:8]}",
                         variant=variant)
        adapter.prepare()
        return pair_runs(adapter, work_ms=work_ms, cls=FaustRun)

    return make


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
