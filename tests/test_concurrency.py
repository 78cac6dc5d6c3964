"""`consumers.concurrency`: N of each pair's own unit inside one consumer process.

Prefork children for Celery, threads for Dramatiq and Huey, `rq worker` processes for RQ, agent
actors for faust, receive loops in threads for the plain clients. Concurrency 1 keeps every
command as it was; N runs N at once, which the timed runs below show against the serial time.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from queuebench import adapters
from queuebench.adapters.base import Adapter
from queuebench.adapters.sqlqueue import write_turn
from queuebench.engine.consumer import ConsumerProcess
from queuebench.engine.watchdog import kill_session, session_members
from queuebench.worker.handler import ConsumerConfig
from tests.harness import PairRun, discard, wait_for

CONCURRENCY = 4
MESSAGES = 20
WORK_MS = 200.0

# The option that sets each library's unit on its own command line, at concurrency 4.
COMMAND_LINE_OPTIONS = {
    "huey": {"-w": "4", "-k": "thread"},
    "celery": {"--pool": "prefork", "--concurrency": "4"},
    "dramatiq": {"--processes": "1", "--threads": "4"},
}
RQ_LAUNCHER = ["-m", "queuebench.adapters.rq_worker", "4", "--"]
# No option on the command line: the consumer reads concurrency from its configuration
# (faust's agent, `queuebench consume`'s receive loops).
FROM_CONFIGURATION = {"faust-streaming", "kafka-python", "confluent-kafka", "boto3", "SQLAlchemy",
                      "kombu"}


def queue_name() -> str:
    return f"qbconc{uuid.uuid4().hex[:12]}"


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def same_node(argv: list[str]) -> list[str]:
    """The command with Celery's node name (`-n`, new for each worker process) made one."""
    return [("NODE" if i and argv[i - 1] == "-n" else part) for i, part in enumerate(argv)]


@pytest.mark.parametrize("scheme", list(adapters.PAIRS))
def test_every_pair_declares_its_unit_and_takes_concurrency_in_its_own_option(scheme):
    """consumer_argv(4) carries the library's own option (or, where the library has none, the
    command is unchanged and the configuration carries it); consumer_argv(1) is the command as
    it was, which differs from concurrency 4 only in that option's value."""
    adapter = adapters.create(scheme, queue="qb-conc")
    assert type(adapter).concurrency_unit.strip()
    one, four = same_node(adapter.consumer_argv()), same_node(adapter.consumer_argv(CONCURRENCY))
    assert same_node(adapter.consumer_argv(1)) == one
    if adapter.library in COMMAND_LINE_OPTIONS:
        expected = COMMAND_LINE_OPTIONS[adapter.library]
        assert {flag: option(four, flag) for flag in expected} == expected
        changed = [i for i, (a, b) in enumerate(zip(one, four, strict=True)) if a != b]
        assert [one[i - 1] for i in changed] == [f for f, v in expected.items() if v == "4"]
        assert all(one[i] == "1" for i in changed)
    elif adapter.library == "rq":
        assert four[1:5] == RQ_LAUNCHER and four[5:] == one
        assert one[1:4] == ["-m", "rq.cli", "worker"]
    else:
        assert adapter.library in FROM_CONFIGURATION
        assert four == one


def test_faust_agent_runs_concurrency_actors(tmp_path):
    """faust's unit is the agent's `concurrency`, read from the consumer's configuration."""
    from queuebench.adapters.faust import worker_app

    config = ConsumerConfig("faust+kafka://127.0.0.1:9092", "qb-conc", "default",
                            str(tmp_path / "ledger"), 0.0, concurrency=CONCURRENCY)
    [agent] = worker_app(config).agents.values()
    assert agent.concurrency == CONCURRENCY


# --- the RQ launcher, with stand-in workers --------------------------------------------------

def launcher(copies: int, code: str, *args: str) -> subprocess.Popen[bytes]:
    """`rq_worker` over stand-in workers (`python -c code args`), in a session of its own."""
    return subprocess.Popen([sys.executable, "-m", "queuebench.adapters.rq_worker", str(copies),
                             "--", sys.executable, "-c", code, *args], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        kill_session(proc.pid)
        proc.wait()
    proc.stdout.close()


WARM_WORKER = ("import signal, sys, time\n"
               "signal.signal(signal.SIGTERM, lambda *_: (print('warm stop', flush=True), "
               "sys.exit(0)))\n"
               "print('up', flush=True)\n"
               "time.sleep(60)\n")


def test_rq_launcher_passes_a_stop_to_every_worker_and_keeps_them_in_its_session():
    """Each worker gets the SIGTERM once and stops warm; the launcher exits 0 after them. The
    workers are in the launcher's session, so a kill of the session reaches them all."""
    stopped = launcher(3, WARM_WORKER)
    try:
        wait_for(lambda: len(session_members(stopped.pid)) == 4, "the launcher and 3 workers")
        time.sleep(0.5)  # their SIGTERM handlers are in place
        stopped.send_signal(signal.SIGTERM)
        assert stopped.wait(timeout=10) == 0
        assert stopped.stdout.read().decode().count("warm stop") == 3
        assert session_members(stopped.pid) == []
    finally:
        end(stopped)
    killed = launcher(3, WARM_WORKER)
    try:
        wait_for(lambda: len(session_members(killed.pid)) == 4, "the launcher and 3 workers")
        kill_session(killed.pid)  # what ConsumerProcess.kill does
        killed.wait(timeout=10)
        assert session_members(killed.pid) == []
    finally:
        end(killed)


def test_rq_launcher_fails_with_a_worker_that_exits_unasked(tmp_path):
    """One worker dying on its own stops the others and gives its exit code, as a lone `rq
    worker` dying would make the consumer fail."""
    first_exits = ("import os, sys, time\n"
                   "try:\n"
                   "    os.close(os.open(sys.argv[1], os.O_CREAT | os.O_EXCL))\n"
                   "except FileExistsError:\n"
                   "    time.sleep(60)\n"
                   "else:\n"
                   "    time.sleep(0.5)\n"
                   "    sys.exit(3)\n")
    proc = launcher(3, first_exits, str(tmp_path / "token"))
    try:
        assert proc.wait(timeout=10) == 3
        assert session_members(proc.pid) == []  # the two sleepers were stopped
        assert b"a worker exited with code 3; stopping the others" in proc.stdout.read()
    finally:
        end(proc)


# --- timed runs: N at once beats the serial time ------------------------------------------------

class ConcurrentRun(PairRun):
    """A PairRun whose consumer runs `concurrency` of the pair's unit."""

    def __init__(self, adapter: Adapter, folder: Path, *, work_ms: float, concurrency: int):
        super().__init__(adapter, folder, work_ms=work_ms)
        self.consumer = ConsumerProcess(adapter, ledger_dir=folder / "ledger", work_ms=work_ms,
                                        log_path=folder / "consumer.log", concurrency=concurrency)


def timed_run(adapter: Adapter, folder: Path, *, messages: int = MESSAGES,
              concurrency: int = CONCURRENCY, work_ms: float = WORK_MS,
              ready: Callable[[], bool] | None = None) -> tuple[list[int], float]:
    """Queue `messages`, then let one consumer of `concurrency` drain them; the sequence numbers
    received (after a graceful stop) and the seconds from the first message's start of work to
    the last's. With `ready`, the consumer starts first and the messages go once it is true."""
    adapter.prepare()
    run = ConcurrentRun(adapter, folder, work_ms=work_ms, concurrency=concurrency)
    try:
        if ready is None:
            run.send(messages)
        run.consumer.start()
        if ready is not None:
            wait_for(ready, f"the consumer to be ready; its log: {run.consumer.log_tail()}")
            run.send(messages)
        run.wait_received(messages, timeout=90)
        run.consumer.stop(timeout=30)
        receipts = run.ledger.poll()
    finally:
        run.close()
        discard(adapter)
    starts = [r.received_ns for r in receipts]
    return sorted(r.seq for r in receipts), (max(starts) - min(starts)) / 1e9


def assert_concurrent(seqs: list[int], span: float, *, messages: int = MESSAGES,
                      work_ms: float = WORK_MS) -> None:
    assert seqs == list(range(messages))  # every message, once
    serial = (messages - 1) * work_ms / 1000  # one at a time, work starts this far apart
    assert span < serial / 2, f"work started over {span:.2f} s; one at a time: {serial:.2f} s"


@pytest.mark.parametrize("scheme", ["huey+sqlite", "celery+sqlite"])
def test_embedded_worker_runs_four_at_once(scheme, tmp_path):
    """Huey's 4 threads and Celery's 4 prefork children take 20 tasks of 200 ms in well under
    the 3.8 s that one at a time needs, each task once."""
    adapter = adapters.create(f"{scheme}:///{tmp_path}/queue.sqlite", queue=queue_name())
    seqs, span = timed_run(adapter, tmp_path / "run")
    assert_concurrent(seqs, span)


def test_the_workload_key_reaches_each_consumer_through_the_engine(tmp_path):
    """`queuebench run throughput --set consumers.concurrency=4` on the SQL queue: 20 messages
    of 200 ms consumed in well under the serial 4 s, none lost or repeated, and the result
    records the concurrency."""
    reports = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "queuebench", "run", "throughput", "--pair",
         f"sqlalchemy+sqlite:///{tmp_path}/sqlqueue.sqlite", "--set", "consumers.concurrency=4",
         "--set", f"work_ms={WORK_MS:g}", "--messages", str(MESSAGES), "--repeats", "1",
         "--reports-dir", str(reports)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    results = (reports / "latest" / "results.json").resolve()
    [result] = json.loads(results.read_text())["results"]
    m = result["measurements"]
    assert result["config"]["concurrency"] == CONCURRENCY
    assert (m["total"], m["successful"], m["lost"], m["duplicates"]) == (MESSAGES, MESSAGES, 0, 0)
    assert m["time_to_consume_sec"] < MESSAGES * WORK_MS / 1000 / 2
    [log] = results.parent.glob("experiments/*/consumer.log")
    # The thread mode says so in the log, as `queuebench consume`'s command line cannot.
    assert f"consume: {CONCURRENCY} receive loops in threads" in log.read_text()


# --- the SQL queue's loops on one SQLite file ------------------------------------------------

def sqlite_loop(url: str, handled: list[bytes]) -> tuple[threading.Thread, threading.Event,
                                                          list[BaseException]]:
    """One receive loop of the SQL queue in a thread, as `queuebench consume` runs each."""
    adapter = adapters.create(url, queue="q")
    stopping, failures = threading.Event(), []

    def receive() -> None:
        try:
            adapter.consume(handled.append, stopping)
        except BaseException as exc:
            failures.append(exc)
        finally:
            adapter.cleanup()

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    return thread, stopping, failures


def test_an_idle_sqlite_loop_does_not_wait_for_the_write_lock(tmp_path):
    """A producer in another process holds SQLite's one write lock; a loop on the empty queue
    goes on polling (it reads) and stops when asked, where a claim would wait in SQLite's busy
    handler for the lock."""
    url = f"sqlalchemy+sqlite:///{tmp_path}/queue.sqlite"
    adapters.create(url, queue="q").prepare()
    writer = sqlite3.connect(tmp_path / "queue.sqlite")
    writer.execute("BEGIN IMMEDIATE")  # the write lock, as a producer's transaction holds it
    try:
        thread, stopping, failures = sqlite_loop(url, handled := [])
        time.sleep(0.5)
        stopping.set()
        thread.join(2)
        assert not thread.is_alive(), "the idle loop waited for the write lock"
    finally:
        writer.rollback()
        writer.close()
    assert failures == [] and handled == []


def test_sqlite_loops_of_one_process_write_in_turn(tmp_path):
    """While this process's write turn on the file is taken, a loop with a message visible
    waits for it, and claims the message once the turn is free."""
    url = f"sqlalchemy+sqlite:///{tmp_path}/queue.sqlite"
    adapter = adapters.create(url, queue="q")
    adapter.prepare()
    adapter.producer().send(b"one")
    with write_turn(adapter.engine):
        thread, stopping, failures = sqlite_loop(url, handled := [])
        time.sleep(0.5)
        assert handled == [], "the loop claimed a row outside the process's write turn"
    wait_for(lambda: handled == [b"one"], "the loop to claim the message", timeout=5)
    stopping.set()
    thread.join(5)
    assert failures == []
    adapter.cleanup()


# --- one pair per broker family --------------------------------------------------------------

@pytest.mark.parametrize("scheme", [
    pytest.param("rq+redis", marks=pytest.mark.broker("redis"), id="rq+redis"),
    pytest.param("dramatiq+redis", marks=pytest.mark.broker("redis"), id="dramatiq+redis"),
    pytest.param("dramatiq+rabbitmq", marks=pytest.mark.broker("rabbitmq"),
                 id="dramatiq+rabbitmq"),
    pytest.param("sqlalchemy+postgres", marks=pytest.mark.broker("postgres"),
                 id="sqlalchemy+postgres"),
    pytest.param("faust+kafka", marks=pytest.mark.broker("kafka"), id="faust+kafka"),
])
def test_broker_pair_runs_four_at_once(scheme, tmp_path):
    """4 rq workers, 4 dramatiq threads, 4 claiming threads, 4 faust actors on one partition:
    20 tasks of 200 ms in well under the serial time, each once."""
    adapter = adapters.create(scheme, queue=queue_name())
    ready = None
    if scheme == "rq+redis":  # 4 processes, which a busy machine starts seconds apart
        import rq

        def ready() -> bool:
            return len(rq.Worker.all(queue=adapter.rq_queue())) == CONCURRENCY

    seqs, span = timed_run(adapter, tmp_path / "run", ready=ready)
    assert_concurrent(seqs, span)


@pytest.mark.broker("elasticmq")
def test_sqs_receive_threads_run_four_at_once(tmp_path):
    """4 receive threads on boto3+sqs. Each receive takes up to 10 messages and works through
    them alone, so 40 are needed to give each thread a batch."""
    seqs, span = timed_run(adapters.create("boto3+sqs", queue=queue_name()), tmp_path / "run",
                           messages=40)
    assert_concurrent(seqs, span, messages=40)


@pytest.mark.broker("kafka")
@pytest.mark.parametrize("scheme", ["kafka-python+kafka", "confluent-kafka+kafka"])
def test_kafka_members_in_threads_share_one_partition(scheme, tmp_path):
    """2 group members in threads of one process: both join the group, but with one partition
    only one of them receives, so every message comes once and no faster than one at a time."""
    adapter = adapters.create(scheme, queue=queue_name())
    adapter.prepare()
    run = ConcurrentRun(adapter, tmp_path / "run", work_ms=100, concurrency=2)
    try:
        run.send(10)
        run.consumer.start()
        run.wait_received(10, timeout=90)

        def assigned() -> list[list[int]] | None:
            """Each member's partitions; None while a member has no assignment yet."""
            members = adapter.admin.describe_groups([adapter.group_id])[adapter.group_id][
                "members"]
            if len(members) < 2 or not all(isinstance(m["member_assignment"], dict)
                                           for m in members):
                return None
            return sorted([p for a in m["member_assignment"]["assigned_partitions"]
                           for p in a["partitions"]] for m in members)

        # A loaded machine may still be rebalancing the second member in: wait for it.
        deadline = time.monotonic() + 30
        while assigned() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert assigned() == [[], [0]]  # two members; the one partition went to one of them
        run.consumer.stop(timeout=30)
        receipts = run.ledger.poll()
    finally:
        run.close()
        discard(adapter)
    assert sorted(r.seq for r in receipts) == list(range(10))
    starts = sorted(r.received_ns for r in receipts)
    assert (starts[-1] - starts[0]) / 1e9 >= 9 * 0.1 * 0.9  # one at a time


@pytest.mark.broker("kafka")
@pytest.mark.parametrize("scheme", ["kafka-python+kafka", "confluent-kafka+kafka"])
def test_a_kafka_group_is_settled_only_with_every_member_in_and_every_partition_held(
        scheme, tmp_path):
    """3 members in threads on a topic of 3 partitions: not settled before they join, settled
    once each holds one, and never settled for a count of members that is not there."""
    adapter = adapters.create(scheme, queue=queue_name())
    adapter.partitions = 3
    adapter.prepare()
    run = ConcurrentRun(adapter, tmp_path / "run", work_ms=0, concurrency=3)
    try:
        assert adapter.unsettled_group(3) == ("group Dead, 0 of 3 members in, "
                                              "0 of 3 partitions held")  # none yet
        run.consumer.start()
        wait_for(lambda: adapter.unsettled_group(3) is None,
                 f"3 members holding 3 partitions; log: {run.consumer.log_tail()}", timeout=90,
                 poll=0.5)
        assert adapter.unsettled_group(4) == ("group Stable, 3 of 4 members in, "
                                              "3 of 3 partitions held")
        members = adapter.admin.describe_groups([adapter.group_id])[adapter.group_id]["members"]
        assert sorted(len(m["member_assignment"]["assigned_partitions"][0]["partitions"])
                      for m in members) == [1, 1, 1]
        run.consumer.stop(timeout=30)
    finally:
        run.close()
        discard(adapter)


@pytest.mark.broker("redis")
def test_rq_workers_stop_warm_together(tmp_path):
    """SIGTERM to the consumer reaches its 4 `rq worker` processes: each finishes the job in
    hand (RQ's warm shutdown), so the 4 jobs under way all end with a receipt."""
    import rq

    adapter = adapters.create("rq+redis", queue=queue_name())
    adapter.prepare()
    run = ConcurrentRun(adapter, tmp_path / "run", work_ms=1500, concurrency=CONCURRENCY)
    ledger = tmp_path / "run" / "ledger"
    try:
        run.consumer.start()
        wait_for(lambda: len(rq.Worker.all(queue=adapter.rq_queue())) == CONCURRENCY,
                 f"{CONCURRENCY} rq workers; log: {run.consumer.log_tail()}")
        run.send(CONCURRENCY)
        wait_for(lambda: sum(f.read_text().count(" started\n") for f in ledger.glob("*.log"))
                 == CONCURRENCY, "every job under way")
        assert run.received() == 0
        assert run.consumer.stop(timeout=30) < 5
        assert run.seqs() == list(range(CONCURRENCY))
    finally:
        run.close()
        discard(adapter)
