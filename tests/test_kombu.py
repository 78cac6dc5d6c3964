"""kombu+redis and kombu+rabbitmq: SimpleQueue consumers as threads, on shared connections.

What only these pairs do: threads meet on a connection per 50 of them (or on one), bytes travel
raw, and 100 receive threads share 1,000 messages. Graceful stops and kills through the engine
run in tests/test_experiments.py, as for every pair.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter

import pytest

from queuebench import adapters
from queuebench.adapters.kombu import ConnectionShares, KombuAdapter
from tests.harness import WAIT_SEC, send_all, wait_for
from tests.test_concurrency import ConcurrentRun

NON_UTF8 = b"\xff\xfe\x80" + bytes(range(256)) + os.urandom(512)
BROKER_PAIRS = [pytest.param("kombu+redis", marks=pytest.mark.broker("redis"), id="redis"),
                pytest.param("kombu+rabbitmq", marks=pytest.mark.broker("rabbitmq"),
                             id="rabbitmq")]
VARIANTS = ["default", "connection-per-50"]


def create(scheme: str, variant: str = "default") -> KombuAdapter:
    return adapters.create(scheme, queue=f"qb-kombu-{uuid.uuid4().hex[:8]}", variant=variant)


@pytest.mark.parametrize(("variant", "connections"), [("default", 1), ("connection-per-50", 3)])
def test_threads_meet_on_a_connection_per_50_or_on_one(variant, connections):
    """120 receive threads take 3 connections of 50, 50 and 20 threads, or all one; the last
    thread to leave a connection releases it. (Connections open lazily: no broker is reached.)"""
    shares = ConnectionShares()
    loops = [create("kombu+rabbitmq", variant) for _ in range(120)]
    taken = [shares.take(adapter) for adapter in loops]
    distinct = list({id(share): share for share in taken}.values())
    assert len(distinct) == connections
    assert sum(share.threads for share in distinct) == 120
    for adapter, share in zip(loops, taken, strict=True):
        shares.give_back(adapter, share)
    assert all(share.threads == 0 for share in distinct)
    assert shares.take(loops[0]) not in distinct, "a released connection is never handed out"


@pytest.mark.parametrize("scheme", BROKER_PAIRS)
def test_non_utf8_bytes_arrive_intact_as_raw_application_data(scheme):
    """The consume loop hands the handler the very bytes sent, none of them UTF-8 text; they
    travel as kombu's raw application/data, and Redis stores them within the declared size."""
    adapter = create(scheme)
    adapter.prepare()
    send_all(adapter, [NON_UTF8, b""])
    if adapter.broker == "redis":
        with adapter.connection() as connection:
            stored = connection.default_channel.client.lindex(adapter.queue, -1)
        assert b'"content-type": "application/data"' in stored
        assert len(stored) <= adapter.size_limit.wire_bytes(len(NON_UTF8))
    received: list[bytes] = []
    stopping = threading.Event()

    def handle(body: bytes) -> None:
        received.append(body)
        if len(received) == 2:
            stopping.set()

    loop = threading.Thread(target=adapter.consume, args=(handle, stopping))
    loop.start()
    loop.join(WAIT_SEC)
    stopping.set()
    assert received == [NON_UTF8, b""]
    assert adapter.backlog().waiting == 0
    adapter.cleanup()


def receivers(scheme: str, monkeypatch, *, threads: int, messages: int) -> Counter[str]:
    """How many of `messages` each of `threads` receive loops on one connection handled, run
    as `queuebench consume` runs them (an adapter per thread, all in this process), the
    messages sent once every loop has subscribed."""
    adapter = create(scheme)
    adapter.prepare()
    handled: Counter[str] = Counter()
    stopping = threading.Event()
    subscribed = []
    subscribe = KombuAdapter._subscribe
    monkeypatch.setattr(KombuAdapter, "_subscribe",
                        lambda *args: subscribed.append(subscribe(*args)) or subscribed[-1])

    def handle(_body: bytes) -> None:
        handled[threading.current_thread().name] += 1

    loops = [threading.Thread(target=adapters.create(scheme, queue=adapter.queue).consume,
                              args=(handle, stopping), name=f"receive-{i}")
             for i in range(threads)]
    for loop in loops:
        loop.start()
    wait_for(lambda: len(subscribed) == threads, f"{threads} loops to subscribe")
    send_all(adapter, [b"m"] * messages)
    wait_for(lambda: handled.total() >= messages, f"{messages} messages handled; {handled}")
    stopping.set()
    for loop in loops:
        loop.join(WAIT_SEC)
    assert adapter.backlog().waiting == 0
    adapter.cleanup()
    return handled


@pytest.mark.broker("redis")
def test_on_redis_one_thread_per_connection_receives_every_message(monkeypatch):
    """kombu's virtual transport keeps one consumer callback per queue name per Connection: of
    20 threads sharing one, the last to subscribe handles all 200 messages."""
    handled = receivers("kombu+redis", monkeypatch, threads=20, messages=200)
    assert list(handled.values()) == [200], handled


@pytest.mark.broker("rabbitmq")
def test_on_rabbitmq_every_thread_on_a_shared_connection_receives(monkeypatch):
    """RabbitMQ pushes to each channel in turn (prefetch 1): 20 threads sharing one connection
    all handle some of 200 messages."""
    handled = receivers("kombu+rabbitmq", monkeypatch, threads=20, messages=200)
    assert handled.total() == 200 and len(handled) == 20, handled


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scheme", BROKER_PAIRS)
def test_100_receive_threads_take_1000_messages_each_once(scheme, variant, tmp_path):
    """100 SimpleQueue threads, on one connection or on two of 50, receive all 1,000 messages
    sent while they run, each once, and the broker holds none afterwards."""
    adapter = create(scheme, variant)
    adapter.prepare()
    run = ConcurrentRun(adapter, tmp_path / "run", work_ms=0, concurrency=100)
    try:
        run.consumer.start()
        wait_for(lambda: "receive loops in threads" in run.consumer.log_tail(),
                 f"the consumer's threads; its log: {run.consumer.log_tail()}")
        run.send(1000)
        run.wait_received(1000, timeout=120)
        run.consumer.stop(timeout=60)
        assert run.seqs() == list(range(1000)), run.consumer.log_tail()
        assert adapter.backlog().waiting == 0
    finally:
        run.close()
        adapter.cleanup()
