"""celery+sqlite: Celery's own worker over kombu's SQLAlchemy transport, killed and stopped.

Pair-specific behaviour only; the contract every pair keeps is tested elsewhere. The tests read
kombu's own `kombu_message` table to see which messages the worker had taken when it died.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from kombu.utils.json import loads as kombu_loads

from queuebench import adapters
from queuebench.adapters.celery import CeleryAdapter
from queuebench.engine.consumer import ConsumerProcess
from queuebench.engine.ledger import LedgerReader
from queuebench.worker.envelope import unwrap, wrap
from tests.harness import wait_for

WORK_MS = 200  # long enough that a kill lands mid-task


def kombu_rows(db: Path) -> list[tuple[int, bool, int]]:
    """(row id, visible, sequence number) of every row in kombu's message table."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, visible, payload FROM kombu_message ORDER BY id")
        rows = rows.fetchall()
    out = []
    for row_id, visible, payload in rows:
        message = json.loads(payload)
        args, _kwargs, _embed = kombu_loads(base64.b64decode(message["body"]))
        out.append((row_id, bool(visible), unwrap(args[0]).seq))
    return out


class Run:
    """One queue in a fresh SQLite file, a ledger, and a worker started as the runner would."""

    def __init__(self, tmp_path: Path, variant: str, messages: int) -> None:
        self.db = tmp_path / "celery.sqlite"
        self.adapter = adapters.create(f"celery+sqlite:///{self.db}", queue="bench",
                                       variant=variant)
        self.adapter.prepare()
        self.run_id = uuid.uuid4()
        self.expected = messages
        producer = self.adapter.producer()
        for seq in range(messages):
            producer.send(wrap(self.run_id, seq, os.urandom(64)))
        producer.close()
        self.ledger = LedgerReader(tmp_path / "ledger", str(self.run_id))
        self.worker = ConsumerProcess(self.adapter, ledger_dir=tmp_path / "ledger",
                                      work_ms=WORK_MS, log_path=tmp_path / "worker.log")

    def received(self) -> Counter[int]:
        return Counter(receipt.seq for receipt in self.ledger.poll())

    def taken_not_processed(self) -> set[int]:
        """Messages whose row a worker has taken (visible=0) but that have no receipt."""
        taken = {seq for _, visible, seq in kombu_rows(self.db) if not visible}
        return taken - set(self.received())

    def kill_mid_task(self) -> None:
        self.worker.start()
        wait_for(lambda: sum(self.received().values()) >= 2, "two receipts")
        time.sleep(WORK_MS / 2000)  # halfway through the third task
        self.worker.kill()

    def drain(self, expected_receipts: int) -> None:
        """Run a worker until the queue is empty and `expected_receipts` are in, then stop it."""
        self.worker.start()
        try:
            wait_for(lambda: self.adapter.backlog().waiting == 0
                     and len(self.received()) >= expected_receipts, "the queue to drain")
        finally:
            self.worker.stop()


@pytest.fixture
def run_factory(tmp_path: Path):
    runs: list[Run] = []

    def make(variant: str, messages: int) -> Run:
        runs.append(Run(tmp_path, variant, messages))
        return runs[-1]

    yield make
    for run in runs:
        run.worker.ensure_stopped()
        run.adapter.cleanup()


def test_broker_url_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative SQLite path becomes absolute, since the worker runs in another process."""
    monkeypatch.chdir(tmp_path)
    adapter = CeleryAdapter("celery+sqlite:///q/celery.sqlite", queue="bench")
    assert adapter.broker_url == f"sqla+sqlite:///{tmp_path / 'q' / 'celery.sqlite'}"


def test_default_variant_records_celerys_own_defaults() -> None:
    """The `default` variant sets exactly what Celery does when nothing is configured."""
    from celery.app.defaults import DEFAULTS

    settings = CeleryAdapter.find_variant("default").settings
    for name in ("task_acks_late", "task_reject_on_worker_lost", "worker_prefetch_multiplier"):
        assert settings[name] == (DEFAULTS[name] or False), name
    late = CeleryAdapter.find_variant("acks-late").settings
    assert late["task_acks_late"] is True and late["task_reject_on_worker_lost"] is True


def test_random_bytes_are_base64_twice_on_the_wire(tmp_path: Path) -> None:
    """kombu's JSON wraps bytes in base64, and the sqla transport base64s the body again.

    The declared size overhead is an upper bound that is close to what lands in the row.
    """
    adapter = CeleryAdapter(f"celery+sqlite:///{tmp_path / 'q.sqlite'}", queue="bench")
    adapter.prepare()
    payload_bytes = 17 * 1024
    producer = adapter.producer()
    producer.send(os.urandom(payload_bytes))
    producer.close()
    with sqlite3.connect(tmp_path / "q.sqlite") as conn:
        (stored,) = conn.execute("SELECT length(payload) FROM kombu_message").fetchone()
    declared = adapter.size_limit.wire_bytes(payload_bytes)
    assert 1.9 * payload_bytes < stored <= declared < stored * 1.03
    assert adapter.backlog().waiting == 1
    adapter.cleanup()


@pytest.mark.slow
def test_worker_processes_wrapped_messages_and_stops_warm(run_factory) -> None:
    """The worker writes one receipt per message; SIGTERM lets it finish what it holds."""
    run = run_factory("default", messages=8)
    run.worker.start()
    wait_for(lambda: len(run.received()) >= 2, "two receipts")
    run.worker.stop()
    received_at_stop = run.received()
    assert run.taken_not_processed() == set()  # warm: everything it took, it finished
    run.drain(expected_receipts=run.expected)
    received = run.received()
    assert sorted(received) == list(range(run.expected))
    assert set(received.values()) == {1}
    assert all(receipt.ok for receipt in run.ledger.poll())
    assert len(received_at_stop) < run.expected
    assert "Warm shutdown" in run.worker.log_path.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["default", "acks-late"])
def test_sigkill_loses_the_tasks_in_hand_in_both_variants(run_factory, variant: str) -> None:
    """SIGKILL strands the running task and the one the worker holds, even with acks_late.

    kombu's sqla transport marks a fetched row visible=0 at once and keeps unacked messages only
    in the worker's memory; nothing brings them back once that memory is gone.
    """
    run = run_factory(variant, messages=8)
    run.kill_mid_task()
    in_hand = run.taken_not_processed()
    assert in_hand, "the kill should land while the worker holds a task"
    backlog = run.adapter.backlog()
    assert backlog.stranded is None  # the table cannot tell processed rows from stranded ones
    assert backlog.waiting == run.expected - len(run.received()) - len(in_hand)

    run.drain(expected_receipts=run.expected - len(in_hand))
    time.sleep(1.5)  # more than kombu's 1 s polling interval: nothing else is coming
    received = run.received()
    assert set(range(run.expected)) - set(received) == in_hand
    assert run.adapter.backlog().waiting == 0


def pool_children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited while we looked
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                children.append(int(entry.name))
    return children


@pytest.mark.slow
def test_acks_late_requeues_the_task_of_a_killed_pool_child(run_factory) -> None:
    """Where acks_late does help on sqla: the worker's main process survives a killed pool child
    and, with task_reject_on_worker_lost, puts the task back as a new row once Celery gives the
    child up (worker_lost_wait, 10 s). The default variant loses that task (it was acked).
    """
    run = run_factory("acks-late", messages=5)
    run.worker.start()
    wait_for(lambda: len(run.received()) >= 1, "a receipt")
    time.sleep(WORK_MS / 2000)
    (child,) = pool_children(run.worker._process.pid)
    running = min(run.taken_not_processed())
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: len(run.received()) == run.expected, "every message, the requeued one too")
    run.worker.stop()
    copies = Counter(seq for _, _, seq in kombu_rows(run.db))
    assert [seq for seq, n in copies.items() if n > 1] == [running]  # put back as a second row
    assert run.adapter.backlog().waiting == 0


def test_each_worker_process_has_a_node_name_of_its_own() -> None:
    """On RabbitMQ a worker declares an exclusive remote-control queue named after its node: two
    workers of one name (two consumer processes, or two runs) had the second refused with
    RESOURCE_LOCKED and exit."""
    adapter = adapters.create("celery+rabbitmq://guest:guest@127.0.0.1:5672//", queue="q")

    def node_name(argv: list[str]) -> str:
        return argv[argv.index("-n") + 1]

    first, second = node_name(adapter.consumer_argv()), node_name(adapter.consumer_argv())
    assert first != second and first.startswith("q-") and first.endswith("@%h")
