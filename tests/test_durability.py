"""Broker durability as a setting: the modes a workload sweeps, switched on the live broker, kept
across the broker's restarts, recorded with each result, put back by the run or its healer; and
the outcome each mode decides, pinned against the real broker."""

from __future__ import annotations

import pytest

from queuebench import adapters
from queuebench.engine.phases import NEVER, fault_backlog, first_receipt_after
from queuebench.engine.runner import durability_cells
from queuebench.engine.workload import cells, load
from queuebench.faults.base import HealOrder
from queuebench.faults.healer import heal
from queuebench.services import durability, service
from tests.test_fault_runs import run


@pytest.fixture
def redis_back_to_its_own_mode():
    yield
    durability.reset("redis")


def test_each_durability_mode_of_the_pairs_broker_is_a_row():
    [(_, workload)] = load("broker-restart", [])
    cell = cells("broker-restart", workload)[0]
    modes = {name: [c.durability for c in durability_cells(cell, adapters.PAIRS[name])]
             for name in ("rq+redis", "huey+postgres", "celery+rabbitmq", "huey+sqlite")}
    assert modes == {"rq+redis": ["none", "rdb", "aof-everysec", "aof-always"],
                     "huey+postgres": ["sync-commit", "async-commit"],
                     "celery+rabbitmq": [None], "huey+sqlite": [None]}


def test_a_workload_without_durability_leaves_the_broker_as_it_runs():
    [(_, workload)] = load("throughput", [])
    cell = cells("throughput", workload)[0]
    assert [c.durability for c in durability_cells(cell, adapters.PAIRS["rq+redis"])] == [None]


def test_an_unknown_mode_is_named_with_the_ones_there_are():
    with pytest.raises(Exception, match=r"no durability mode 'fsync'.*none, rdb"):
        durability.find("redis", "fsync")


def test_the_backlog_is_back_once_it_drains_to_its_level_at_the_fault():
    """Sent at 0..5 s, one a second; received: 0 at 0.5 s, then nothing until 6 s (the fault from
    1 to 3 s), then the rest. At the injection 1 waits (message 1, sent at 1 s); after the heal
    at 3 s the backlog grows to 5, and is back at 1 when message 4 arrives at 7 s."""
    s = 10**9
    send = [0, 1 * s, 2 * s, 3 * s, 4 * s, 5 * s]
    received = [s // 2, 6 * s, 6 * s + 1, 6 * s + s // 2, 7 * s, 8 * s]
    figures = fault_backlog(send, received, injected_ns=1 * s + 1, healed_ns=3 * s)
    assert figures == {"backlog_at_injection": 1, "backlog_recovered_after_sec": 4.0}


def test_messages_the_fault_lost_were_waiting_at_it_but_are_not_waited_for():
    """Message 1, sent at 1 s, is waiting when the fault comes and is never received: it counts
    in the backlog at the injection, and the backlog is back at once after the heal."""
    s = 10**9
    figures = fault_backlog([0, s, 2 * s], [s // 2, NEVER, 2 * s + 1], injected_ns=s + 1,
                            healed_ns=2 * s)
    assert figures == {"backlog_at_injection": 1, "backlog_recovered_after_sec": 0.0}


def test_recovery_is_timed_from_the_first_receipt_stamped_after_the_heal():
    """Receipts stamped while the fault was in force (written then, read after the heal in a
    live run) are no recovery: the heal at 3 s, the first receipt after it at 4.5 s."""
    s = 10**9
    assert first_receipt_after([s, 2 * s, 4 * s + s // 2, 5 * s], healed_ns=3 * s) == {
        "first_receipt_after_heal_sec": 1.5}
    assert first_receipt_after([s, 2 * s], healed_ns=3 * s) == {}


@pytest.mark.broker("redis")
def test_redis_keeps_its_mode_across_a_restart_and_the_healer_puts_it_back(
        redis_back_to_its_own_mode):
    durability.apply("redis", "aof-always")
    redis = service("redis")
    redis.stop()
    redis.start()
    assert durability.in_force("redis").mode == "aof-always"
    assert heal(HealOrder(durability=["redis"])) == ["redis back to durability none"]
    assert durability.in_force("redis").mode == "none"


@pytest.mark.broker("postgres")
def test_postgres_switches_synchronous_commit_live():
    try:
        durability.apply("postgres", "async-commit")
        assert durability.in_force("postgres").mode == "async-commit"
    finally:
        durability.reset("postgres")
    assert durability.in_force("postgres").mode == "sync-commit"


@pytest.mark.slow
@pytest.mark.broker("redis")
def test_a_redis_crash_loses_the_queue_unless_the_append_only_file_keeps_it(
        tmp_path, redis_back_to_its_own_mode):
    """huey+redis, Redis killed with messages queued, in each durability mode: without
    persistence, and with RDB snapshots none of which came due, the restart loses the queue; the
    append-only file keeps it. Not always every message: huey's single worker may have popped a
    task when Redis died and drops it when its revocation check fails (huey.py), and with fsync
    every second a busy disk makes Redis hold writes back up to 2 s while it replies (1 lost
    once in CI). Each row records its mode, and Redis is back in its own mode afterwards."""
    rows = run(tmp_path, "broker-restart", "huey+redis", "messages=150", "rate=50",
               "faults=[{broker: kill, at_received: 0.3, down_sec: 1}]", variant="default")
    lost, backlog = {}, {}
    for r in rows:
        assert r["status"] == "ok", r.get("error")
        assert r["pair_info"]["broker_durability"]["mode"] == r["config"]["durability"]
        mode = r["config"]["durability"]
        backlog[mode] = r["measurements"]["fault"]["backlog_at_injection"]
        lost[mode] = r["measurements"]["lost_acked"]
    assert min(backlog.values()) >= 10, backlog
    # Without persistence nearly the whole backlog goes (the worker had taken a few).
    assert lost["none"] >= backlog["none"] // 2 and lost["rdb"] >= backlog["rdb"] // 2, lost
    assert lost["aof-always"] <= 1, lost
    assert lost["aof-everysec"] <= backlog["aof-everysec"] // 5, lost
    assert durability.in_force("redis").mode == "none"


@pytest.fixture
def elasticmq_back_to_its_own_mode():
    yield
    durability.reset("elasticmq")


@pytest.mark.slow
@pytest.mark.broker("elasticmq")
def test_an_elasticmq_crash_loses_the_queue_unless_h2_keeps_it(tmp_path,
                                                               elasticmq_back_to_its_own_mode):
    """boto3+sqs, ElasticMQ killed with messages queued: in memory, the restart comes back
    without the queue: what was acknowledged is lost and nothing arrives after the heal. With
    the H2 database and the queues file the queue comes back with most of what waited in it
    (H2 writes on its own schedule: the last writes before a kill may be lost, 0 to 10 in our
    runs). ElasticMQ is back in memory afterwards."""
    rows = run(tmp_path, "broker-restart", "boto3+sqs", "messages=150", "rate=50",
               "faults=[{broker: kill, at_received: 0.3, down_sec: 1}]", variant="default")
    assert all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows]
    by_mode = {r["config"]["durability"]: r["measurements"] for r in rows}
    in_memory, h2 = by_mode["in-memory"], by_mode["h2"]
    assert in_memory["lost_acked"] > 0
    assert "first_receipt_after_heal_sec" not in in_memory["fault"]
    assert h2["fault"]["first_receipt_after_heal_sec"] is not None
    assert h2["lost_acked"] < h2["fault"]["backlog_at_injection"] / 2
    assert durability.in_force("elasticmq").mode == "in-memory"
