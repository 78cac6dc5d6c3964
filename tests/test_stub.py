"""The stub pair (`stub+dir`, a queue in a folder): through the whole engine with real consumer
processes, no server, a few seconds each; and never offered to users."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from queuebench import adapters, cli
from queuebench.adapters.stub import LOCK, StubAdapter
from queuebench.engine import phases
from queuebench.engine.common import Experiment
from queuebench.engine.interrupt import Interrupt
from queuebench.engine.results import ExperimentConfig, Result
from queuebench.engine.runner import run_one
from queuebench.engine.workload import Workload, cells
from queuebench.errors import UsageError
from queuebench.payloads.builder import record_batches
from queuebench.worker.envelope import wrap
from queuebench.worker.failures import HandlerFailed
from tests.test_cli import one_line_error, run_cli

FAST_SEC = 10  # each engine run: a consumer start or two and a few dozen small messages


def stub_url(tmp_path: Path) -> str:
    return f"stub+dir:///{tmp_path / 'queues'}"


def engine_run(tmp_path: Path, workload: Workload) -> tuple[Experiment, dict[str, object]]:
    """One repeat of `workload` over the stub pair, as the runner runs it."""
    adapter = adapters.create(stub_url(tmp_path), queue="q")
    cell = cells("stub", workload)[0]
    config = ExperimentConfig(cell.kind, "stub+dir", "default", cell.format, cell.messages,
                              cell.records, cell.work_ms, 30.0, stop=cell.stop,
                              fail_fraction=cell.fail_fraction)
    experiment = Experiment(config, cell, adapter,
                            record_batches("sqlite://", cell.records, cell.messages),
                            tmp_path / "run")
    started = time.monotonic()
    try:
        figures = phases.run(experiment)
    finally:
        experiment.close()
    assert time.monotonic() - started < FAST_SEC, figures["timeline"]  # what took long
    return experiment, figures


def ledger_lines(experiment: Experiment) -> dict[str, list[tuple[int, str]]]:
    """(seq, status) of this run's lines, per consumer file (one file per consumer start)."""
    files = {}
    for path in sorted((experiment.folder / "ledger").glob("receipts-*.log")):
        lines = [line.split() for line in path.read_text().splitlines()]
        files[path.name] = [(int(p[1]), p[4]) for p in lines if p[0] == str(experiment.run_id)]
    return files


def test_throughput_every_message_arrives_once(tmp_path):
    """Consumer warm first, 50 messages as fast as they go: all received once, the queue empty,
    the broker check agreeing."""
    _, m = engine_run(tmp_path, Workload(messages=50, payload={"records": 5}))
    assert (m["successful"], m["lost"], m["duplicates"], m["corrupt"]) == (50, 0, 0, 0)
    assert (m["failed"], m["failed_attempts"], m["meant_to_fail"]) == (0, 0, 0)
    assert m["outcome"] == "complete"
    assert m["broker_check"]["agrees"] is True
    assert m["consume_throughput"] and m["latency_ms"]["p50"] is not None


def test_a_killed_consumer_loses_nothing_and_its_message_comes_again(tmp_path):
    """SIGKILL halfway through a task: the claimed file stays under taken/, the restarted
    consumer returns it to the queue and handles it. Nothing lost, nothing stranded."""
    experiment, m = engine_run(tmp_path, Workload(
        messages=10, work_ms=100, payload={"records": 5},
        faults=[{"consumer": "kill", "at_received": 0.5}]))
    assert m["stopped_mid_task"] is True and m["consumer_starts"] == 2
    assert (m["successful"], m["lost"], m["duplicates"]) == (10, 0, 0)
    assert m["outcome"] == "complete"
    assert m["broker_check"]["stranded"] == 0 and m["broker_check"]["agrees"] is True
    first, second = ledger_lines(experiment).values()
    in_hand = {seq for seq, status in first if status == "started"} - {
        seq for seq, status in first if status == "ok"}
    assert len(in_hand) == 1  # the task the kill landed in
    assert (in_hand.pop(), "ok") in second  # handled again after the restart


def test_a_graceful_stop_finishes_the_message_in_hand(tmp_path):
    """SIGTERM halfway through a task: it ends with its receipt; nothing lost or repeated."""
    _, m = engine_run(tmp_path, Workload(
        messages=10, work_ms=100, payload={"records": 5},
        faults=[{"consumer": "graceful", "at_received": 0.5}]))
    assert m["stopped_mid_task"] is True
    assert (m["successful"], m["lost"], m["duplicates"]) == (10, 0, 0)
    assert 0.04 <= m["graceful_stop_sec"] < 2


SPINNING_CONSUMER = """
import os, random, signal, threading
from types import SimpleNamespace
from queuebench.worker import consume

class Spinning:  # a receive loop nearly always inside stopping.wait(); a SIGTERM comes soon
    def consume(self, handle, stopping):
        threading.Timer(random.uniform(0, 0.002), os.kill, (os.getpid(), signal.SIGTERM)).start()
        while not stopping.is_set():
            stopping.wait(0)

    def cleanup(self):
        pass

consume.consumer_config = lambda: SimpleNamespace(concurrency=1, pair_url="", queue="",
                                                  variant="")
consume.adapters.create = lambda *args, **kwargs: Spinning()
for _ in range(100):
    consume.run_consumer()
"""


def test_a_sigterm_at_any_moment_stops_queuebench_consume():
    """100 SIGTERMs, each while the receive loop waits on its stop event: every one ends the
    loop. Before the loop ran in a thread of its own, the handler (main thread) deadlocked on
    the event's lock within a few stops: 1 graceful stop in 100 of the stub pair hung so."""
    process = subprocess.Popen([sys.executable, "-c", SPINNING_CONSUMER])
    try:
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()  # a deadlocked handler takes no SIGTERM
        process.wait()


def test_a_failing_fraction_is_failed_not_lost(tmp_path):
    """fail_fraction 0.2 of 20 messages: 4, 9, 14 and 19 fail in their handler, each once (the
    consumer survives and goes on); the engine counts 4 failed, 0 lost, and knows all 20 are
    accounted for. Where the failed messages end up (dead/, or deleted should `queuebench
    consume` catch HandlerFailed itself) is tested without the engine, below."""
    experiment, m = engine_run(tmp_path, Workload(messages=20, payload={"records": 5},
                                                  fail_fraction=0.2))
    assert (m["successful"], m["lost"], m["failed_by_handler"]) == (16, 0, 4)
    assert m["failed"] == 4  # the seed's field: lost + failed by the handler
    assert m["failed_seqs"] == [4, 9, 14, 19]
    assert (m["failed_attempts"], m["meant_to_fail"], m["unexpected_failures"]) == (4, 4, 0)
    assert m["outcome"] == "complete"  # failed ones count as accounted for: no idle wait
    assert m["consumer_starts"] == 1
    assert m["broker_check"]["agrees"] is True
    [lines] = ledger_lines(experiment).values()
    assert sorted(seq for seq, status in lines if status == "failed") == [4, 9, 14, 19]


def hold_as_a_consumer(taken: Path, name: str, messages: list[str]) -> int:
    """A consumer folder under taken/ holding `messages`, its lock held as a live consumer
    holds it; close the returned descriptor to make it a consumer that is gone."""
    owner = taken / name
    owner.mkdir()
    for message in messages:
        (owner / message).write_bytes(wrap(uuid.uuid4(), 0, message.encode()))
    fd = os.open(owner / LOCK, os.O_WRONLY | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_stranded_files_are_reported_and_returned_by_the_next_start(tmp_path):
    """A file in the folder of a consumer that is gone is stranded (backlog) until a consumer
    starts and takes it back; one in a live consumer's hands is waiting and left alone."""
    adapter = StubAdapter(stub_url(tmp_path), queue="q")
    adapter.prepare()
    taken = tmp_path / "queues" / "q" / "taken"
    os.close(hold_as_a_consumer(taken, "111-dead", ["00000000000000000001-1-000000001"]))
    live = hold_as_a_consumer(taken, "222-live", ["00000000000000000002-1-000000002"])
    try:
        backlog = adapter.backlog()
        assert (backlog.waiting, backlog.stranded) == (1, 1)
        handled: list[bytes] = []
        stopping = threading.Event()

        def handle(body: bytes) -> None:
            handled.append(body)
            stopping.set()

        consumer = StubAdapter(stub_url(tmp_path), queue="q")
        thread = threading.Thread(target=consumer.consume, args=(handle, stopping))
        thread.start()
        thread.join(5)
        consumer.cleanup()
        assert len(handled) == 1 and handled[0].endswith(b"00000000000000000001-1-000000001")
        assert not (taken / "111-dead").exists()
        assert (taken / "222-live" / "00000000000000000002-1-000000002").exists()
        assert sorted(os.listdir(taken)) == ["222-live"]  # the consumer's own folder is gone
        assert (adapter.backlog().waiting, adapter.backlog().stranded) == (1, 0)
    finally:
        os.close(live)


def test_a_failing_handler_dead_letters_its_message_and_the_loop_goes_on(tmp_path):
    """HandlerFailed moves the message to dead/; the next message is still handled."""
    adapter = StubAdapter(stub_url(tmp_path), queue="q")
    adapter.prepare()
    producer = adapter.producer()
    for body in (b"first", b"second"):
        producer.send(body)
    seen: list[bytes] = []
    stopping = threading.Event()

    def handle(body: bytes) -> None:
        seen.append(body)
        if body == b"first":
            raise HandlerFailed(0)
        stopping.set()

    adapter.consume(handle, stopping)
    adapter.cleanup()
    assert seen == [b"first", b"second"]
    dead = tmp_path / "queues" / "q" / "dead"
    assert [p.read_bytes() for p in dead.iterdir()] == [b"first"]
    backlog = adapter.backlog()
    assert (backlog.waiting, backlog.stranded) == (0, 0)


def test_the_stub_needs_a_folder_and_says_whether_it_can_make_one(tmp_path):
    with pytest.raises(UsageError, match="stub\\+dir needs a folder"):
        adapters.create("stub+dir://", queue="q")
    (tmp_path / "file").write_text("")
    blocked = StubAdapter(f"stub+dir:///{tmp_path / 'file' / 'queues'}", queue="q")
    with pytest.raises(Exception, match="is not a folder"):
        blocked.check_reachable(1)
    StubAdapter(stub_url(tmp_path), queue="q").check_reachable(1)
    assert not (tmp_path / "queues").exists()  # asked, not made


def test_pairs_lists_no_stub(monkeypatch, capsys):
    """`queuebench pairs` shows the user's pairs only (brokers not probed here)."""
    monkeypatch.setattr(cli, "probe_state", lambda entry: "not probed")
    assert cli.main(["pairs"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(adapters.PAIRS)
    assert not any("stub" in scheme for scheme in listed)
    assert all("stub+dir" not in group for group in adapters.GROUPS.values())


@pytest.mark.parametrize("typed", ["stub", "stub+di", "stub+dirr"])
def test_a_stub_is_never_suggested(typed):
    """A pair name near the stub's is refused without naming it, on the command line too."""
    with pytest.raises(UsageError) as refused:
        adapters.resolve_url(typed)
    assert "stub" not in str(refused.value).replace(repr(typed), "")
    if typed == "stub":
        proc = run_cli("run", "throughput", "--pair", typed)
        assert proc.returncode == 2
        assert "stub+dir" not in one_line_error(proc)


def test_a_consumer_process_creates_the_stub_from_its_url(tmp_path):
    entry, url = adapters.resolve_url(stub_url(tmp_path))
    assert entry.scheme == "stub+dir" and url == stub_url(tmp_path)
    assert isinstance(adapters.create(url, queue="q"), StubAdapter)


def run_stub_case(adapter: StubAdapter, folder: Path, work_ms: float = 0,
                  deadline_sec: float = 30.0) -> Result:
    """One case of 4 messages on the stub pair, through the runner's run_one."""
    cell = cells("stub", Workload(messages=4, payload={"records": 5}, work_ms=work_ms))[0]
    config = ExperimentConfig(cell.kind, "stub+dir", "default", cell.format, cell.messages,
                              cell.records, work_ms, deadline_sec)
    return run_one(config, cell, adapter, record_batches("sqlite://", 5, 4), folder)


@pytest.mark.parametrize("work_ms, deadline_sec, status", [(0, 30.0, "ok"),
                                                          (3000, 2.0, "incomplete"),
                                                          (0, 30.0, "error")])
def test_every_case_deletes_its_queue_however_it_ended(tmp_path, monkeypatch, work_ms,
                                                       deadline_sec, status):
    """A run leaves no litter on the broker: the topics that failed and cut-short cases kept
    grew to 15,075 partitions and made Kafka take over two minutes to start."""
    adapter = adapters.create(stub_url(tmp_path), queue="q")
    if status == "error":  # a library's own error in the middle of the case
        monkeypatch.setattr(Experiment, "produce", lambda _: 1 / 0)
    result = run_stub_case(adapter, tmp_path / "run", work_ms, deadline_sec)
    assert result.status == status
    assert not adapter.queue_dir.exists()


def test_an_interrupted_case_ends_at_once_and_keeps_its_queue(tmp_path, monkeypatch):
    """Ctrl-C ends the run without a round trip to the broker, which may be what hangs."""
    adapter = adapters.create(stub_url(tmp_path), queue="q")

    def interrupted(_) -> None:
        Interrupt.received = True
        raise KeyboardInterrupt

    monkeypatch.setattr(Experiment, "produce", interrupted)
    monkeypatch.setattr(Interrupt, "received", False)
    with pytest.raises(KeyboardInterrupt):
        run_stub_case(adapter, tmp_path / "run")
    assert adapter.queue_dir.exists()
