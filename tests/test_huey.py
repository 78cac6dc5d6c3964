"""huey's own behaviour, seen through `huey_consumer` started the way the runner starts it.

The cross-pair contract suite lives elsewhere; these tests pin what is particular to huey:
dequeue deletes the task, SIGINT lets the task in hand finish, SIGTERM and SIGKILL lose it.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import pickle
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from huey.registry import Message
from huey.serializer import Serializer
from huey.utils import Error

from queuebench.adapters import create
from queuebench.adapters.huey import HueyAdapter, HueyRedisAdapter, JSONSerializer
from queuebench.engine.ledger import tally
from queuebench.worker.envelope import unwrap, wrap
from tests.harness import PairRun, wait_for

WORK_MS = 200.0  # long enough for a signal to land mid-task
INTO_TASK_SEC = 0.05  # after a receipt, the next task has been dequeued and is running


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.broker("redis"))])
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HueyAdapter]:
    queue = f"qbtest{uuid.uuid4().hex[:12]}"  # Redis is shared: a queue of this test's own
    if request.param == "sqlite":
        pair: HueyAdapter = create(f"huey+sqlite:///{tmp_path}/huey.sqlite", queue=queue)
    else:
        # Not in the registry yet, so built directly; conftest skips when Redis is down.
        pair = HueyRedisAdapter("huey+redis://127.0.0.1:6379/0", queue=queue)
    pair.prepare()
    yield pair
    pair.prepare()  # leaves nothing behind on a shared Redis
    pair.cleanup()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.broker("redis")),
                        pytest.param("postgres", marks=pytest.mark.broker("postgres"))])
def json_adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HueyAdapter]:
    """Each huey pair's json-serializer variant, on a queue of this test's own."""
    url = {"sqlite": f"huey+sqlite:///{tmp_path}/huey.sqlite",
           "redis": "huey+redis://127.0.0.1:6379/0",
           "postgres": "huey+postgres://queuebench:queuebench@127.0.0.1:5432/queuebench",
           }[request.param]
    pair: HueyAdapter = create(url, queue=f"qbtest{uuid.uuid4().hex[:12]}",
                               variant="json-serializer")
    pair.prepare()
    yield pair
    pair.prepare()
    pair.cleanup()


class HueyRun(PairRun):
    """A run that can also list the tasks still in huey's queue."""

    def queued_seqs(self) -> list[int]:
        return [unwrap(task.args[0]).seq for task in self.adapter.huey.pending()]


@pytest.fixture
def make_run(pair_runs: Callable[..., PairRun]) -> Callable[..., HueyRun]:
    return functools.partial(pair_runs, cls=HueyRun, work_ms=WORK_MS)


def test_sqlite_url_becomes_absolute_for_the_worker(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative SQLite path is resolved here, so huey_consumer opens the same file anywhere."""
    monkeypatch.chdir(tmp_path)
    adapter = create("huey+sqlite:///queues/huey.sqlite", queue="q")
    assert adapter.url == f"huey+sqlite:///{tmp_path.resolve()}/queues/huey.sqlite"
    argv = adapter.consumer_argv()
    assert argv[1:4] == ["-m", "huey.bin.huey_consumer", "queuebench.adapters.huey_worker.huey"]
    assert argv[4:8] == ["-w", "1", "-k", "thread"]


def test_task_carries_raw_bytes_and_prepare_empties_the_queue(tmp_path: Path) -> None:
    """The queued task holds the payload bytes as sent (pickle, no text encoding)."""
    adapter = create(f"huey+sqlite:///{tmp_path}/huey.sqlite", queue="q")
    adapter.prepare()
    payload = wrap(uuid.uuid4(), 0, bytes(range(256)) * 4)  # not UTF-8
    producer = adapter.producer()
    producer.send(payload)
    producer.close()
    assert [task.args for task in adapter.huey.pending()] == [(payload,)]
    assert adapter.backlog().waiting == 1
    adapter.prepare()
    assert adapter.backlog().waiting == 0
    adapter.cleanup()


def test_huey_consumer_processes_every_message(adapter: HueyAdapter, make_run) -> None:
    """huey_consumer, started through ConsumerProcess, hands each message to the handler once."""
    run = make_run(adapter, work_ms=0)
    run.send(20)
    run.consumer.start()
    run.wait_received(20)
    run.consumer.stop(timeout=10)
    result = tally(run.ledger.poll(), expected=20)
    assert (result.lost, result.duplicates, result.corrupt) == ((), (), 0)
    assert adapter.backlog().waiting == 0


def test_sigint_finishes_the_task_in_hand(adapter: HueyAdapter, make_run) -> None:
    """SIGINT, huey's graceful stop: the running task completes, the rest stay queued."""
    assert adapter.graceful_stop_signal == signal.SIGINT
    run = make_run(adapter)
    run.send(5)
    run.consumer.start()
    run.wait_received(1)
    time.sleep(INTO_TASK_SEC)  # message 1 is now running
    assert run.consumer.stop(timeout=10) < 5
    assert sorted(r.seq for r in run.ledger.poll()) == [0, 1]
    assert run.queued_seqs() == [2, 3, 4]


class TermStoppedHueyAdapter(HueyAdapter):
    """The sqlite pair, stopped with SIGTERM as `docker stop` or systemd would stop it."""

    graceful_stop_signal = signal.SIGTERM


def test_sigterm_drops_the_task_in_hand(tmp_path: Path, make_run) -> None:
    """SIGTERM is huey's immediate stop: the consumer exits and the running task is lost."""
    adapter = TermStoppedHueyAdapter(f"huey+sqlite:///{tmp_path}/huey.sqlite", queue="q")
    adapter.prepare()
    run = make_run(adapter, work_ms=1000)  # long, so the task is surely unfinished at exit
    run.send(4)
    run.consumer.start()
    run.wait_received(1)
    time.sleep(INTO_TASK_SEC)
    assert run.consumer.stop(timeout=10) < 0.9  # did not wait for the task
    time.sleep(1.0)  # had the task survived somewhere, its receipt would be written by now
    assert [r.seq for r in run.ledger.poll()] == [0]
    assert run.queued_seqs() == [2, 3]  # message 1 is neither processed nor queued
    adapter.cleanup()


def test_sigkill_mid_task_loses_that_task_for_good(adapter: HueyAdapter, make_run) -> None:
    """Dequeue deleted the running task: after SIGKILL and a restart it never comes back."""
    run = make_run(adapter)
    run.send(6)
    run.consumer.start()
    run.wait_received(2)
    time.sleep(INTO_TASK_SEC)  # message 2 is now running
    run.consumer.kill()
    assert sorted(r.seq for r in run.ledger.poll()) == [0, 1]
    assert run.queued_seqs() == [3, 4, 5]
    assert adapter.backlog().waiting == 3

    run.consumer.start()
    run.wait_received(5)
    wait_for(lambda: adapter.backlog().waiting == 0, "an empty queue")
    time.sleep(3 * WORK_MS / 1000)  # room for a redelivery, were there one
    run.consumer.stop(timeout=10)
    result = tally(run.ledger.poll(), expected=6)
    assert (result.lost, result.duplicates) == ((2,), ())


class MakesADirectoryWhenUnpickled:
    """What a writer to the broker could store in place of a task: unpickling it runs os.mkdir."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def test_json_serializer_unpickles_nothing(tmp_path: Path) -> None:
    """huey's default serializer runs what it unpickles; the JSON one refuses the same bytes."""
    planted = pickle.dumps(MakesADirectoryWhenUnpickled(tmp_path / "by-json"))
    with pytest.raises(ValueError):  # not JSON: JSONDecodeError or UnicodeDecodeError
        JSONSerializer().deserialize(planted)
    assert not (tmp_path / "by-json").exists()
    Serializer().deserialize(pickle.dumps(MakesADirectoryWhenUnpickled(tmp_path / "by-pickle")))
    assert (tmp_path / "by-pickle").is_dir()


def test_json_serializer_round_trips_what_huey_stores() -> None:
    """Messages (bytes arguments, datetimes, a chained task), results and errors come back as
    they went; a type JSON cannot carry is refused when enqueued, not pickled."""
    eta = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    then = Message("id-2", "t", None, 0, 0, None, ({"a": [1, 2.5]},), {}, None, None, None, None,
                   None, None, None)
    message = Message("id-1", "queuebench_message", eta, 2, 1.5, 10, (bytes(range(256)),), {},
                      then, None, None, eta, None, ("cid", 2, 0, then), None)
    serializer = JSONSerializer()
    for value in (message, Error({"error": "boom", "retries": 0}), None, (1, "x", b"\0")):
        stored = serializer.serialize(value)
        json.loads(stored)
        assert serializer.deserialize(stored) == value
    assert type(serializer.deserialize(serializer.serialize(message))) is Message
    with pytest.raises(TypeError, match="cannot carry a set"):
        serializer.serialize(Message("id", "t", args=({1, 2},)))


def test_json_serializer_variant_differs_from_default_in_the_serializer_only() -> None:
    """Same worker command and delivery settings; the wire size follows base64."""
    default = create("huey+redis://127.0.0.1:6379/0", queue="q")
    json_variant = create("huey+redis://127.0.0.1:6379/0", queue="q", variant="json-serializer")
    assert json_variant.consumer_argv() == default.consumer_argv()
    assert {**json_variant.settings, "serializer": "pickle"} == dict(default.settings)
    assert json_variant.settings["serializer"] == "json"
    assert json_variant.size_limit.max_bytes == default.size_limit.max_bytes
    assert json_variant.size_limit.wire_bytes(3_000) > 4_000 > default.size_limit.wire_bytes(3_000)


def test_json_serializer_variant_stores_json_and_consumer_processes_every_message(
        json_adapter: HueyAdapter, make_run) -> None:
    """The broker holds JSON with the payload as base64; huey_consumer, given the same serializer
    by the worker module, hands each message to the handler once."""
    run = make_run(json_adapter, work_ms=0)
    run.send(20, payload=os.urandom(1_000))
    stored = json_adapter.huey.storage.enqueued_items()
    assert len(stored) == 20
    for data in stored:
        [argument] = json.loads(data)["__huey_message__"][6]["__tuple__"]
        assert list(argument) == ["__bytes__"]
        sent = base64.b64decode(argument["__bytes__"])
        assert len(data) <= json_adapter.size_limit.wire_bytes(len(sent))
    assert run.queued_seqs() == list(range(20))
    run.consumer.start()
    run.wait_received(20)
    run.consumer.stop(timeout=10)
    result = tally(run.ledger.poll(), expected=20)
    assert (result.lost, result.duplicates, result.corrupt) == ((), (), 0)
    assert json_adapter.backlog().waiting == 0


def test_a_redis_worker_pool_takes_a_connection_per_thread_of_a_large_fleet() -> None:
    """Each huey worker thread holds a Redis connection while it waits (BRPOP): redis-py 8 caps
    a pool at 100 connections, which 300 threads overran (MaxConnectionsError, tasks lost)."""
    from queuebench.adapters.huey import huey_for

    huey, _ = huey_for("huey+redis://127.0.0.1:6379/3", "q")
    assert huey.storage.pool.max_connections >= 900
    assert huey.storage.pool.connection_kwargs["db"] == 3
