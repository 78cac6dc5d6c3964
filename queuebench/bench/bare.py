"""The bare side of the overhead benchmark: each fast pair's client with no envelope, no ledger
and no handler, sending the same encoded payloads.

- confluent-kafka: a `produce()` + `poll(0)` loop and a `poll()` loop in this process, with the
  pair's own consumer settings.
- Huey and Dramatiq: a no-op task enqueued with the library's own API and run by the library's
  own worker, started with the pair's command line but a task module of ours (bare_worker.py).
  The task only notes the time of its first and last call and, at the last, writes them to a
  file: the receipts' measure (first to last handler call) without a line per message.

Each returns messages/s: produce from the first send to the flush, consume from the first
message handled to the last.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from queuebench.adapters.base import Adapter
from queuebench.errors import ConsumerFailed
from queuebench.payloads.codecs import encode
from queuebench.payloads.records import StockRecord

BARE_ENV = "QUEUEBENCH_BARE"  # the bare worker's configuration, as JSON
NOOP_TASK = "queuebench_noop"
# The pair's worker module on its command line -> ours, with the same broker and settings.
WORKER_MODULES = {
    "queuebench.adapters.huey_worker.huey": "queuebench.bench.bare_worker.huey",
    "queuebench.adapters.dramatiq_worker:broker": "queuebench.bench.bare_worker:broker",
}
POLL_SEC = 0.5
WATCH_SEC = 0.02
STOP_TIMEOUT_SEC = 30.0


class CallClock:
    """Counts calls of the no-op task; at the `expected`-th, writes the first and last call's
    wall time (ns) to `done_path`. One worker thread calls it (the pairs' default)."""

    def __init__(self, expected: int, done_path: str) -> None:
        self.expected, self.done_path = expected, done_path
        self.calls = self.first_ns = 0

    def tick(self) -> None:
        now = time.time_ns()
        self.calls += 1
        if self.calls == 1:
            self.first_ns = now
        if self.calls == self.expected:
            partial = f"{self.done_path}.partial"
            Path(partial).write_text(f"{self.first_ns} {now}\n")
            os.replace(partial, self.done_path)  # whole or absent for the watcher


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def drain_rate(count: int, first_ns: int, last_ns: int) -> float:
    """Messages/s from the first message handled to the last: `count - 1` intervals."""
    return rate(count - 1, (last_ns - first_ns) / 1e9)


def produce_kafka(adapter: Adapter, records: Sequence[list[StockRecord]], fmt: str,
                  messages: int) -> float:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": adapter.bootstrap})
    producer.list_topics(adapter.queue, timeout=30)  # connected, as the engine's producer is
    started = time.perf_counter()
    for seq in range(messages):
        payload = encode(records[seq], fmt)
        while True:
            try:
                producer.produce(adapter.queue, value=payload)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
    undelivered = producer.flush(300)
    seconds = time.perf_counter() - started
    if undelivered:
        raise ConsumerFailed(f"bare producer: {undelivered} messages undelivered")
    return rate(messages, seconds)


def consume_kafka(adapter: Adapter, messages: int, timeout: float) -> float:
    from confluent_kafka import Consumer

    from queuebench.adapters.confluent import CONSUMER_KEYS

    consumer = Consumer({"bootstrap.servers": adapter.bootstrap, "group.id": adapter.group_id,
                         **{key: adapter.settings[key] for key in CONSUMER_KEYS}})
    consumer.subscribe([adapter.queue])
    count = first_ns = last_ns = 0
    give_up = time.monotonic() + timeout
    try:
        while count < messages and time.monotonic() < give_up:
            message = consumer.poll(POLL_SEC)
            if message is None or message.error() is not None:
                continue
            last_ns = time.time_ns()
            first_ns = first_ns or last_ns
            count += 1
    finally:
        consumer.close()
    if count < messages:
        raise ConsumerFailed(f"bare consumer: {count} of {messages} messages in {timeout:.0f} s")
    return drain_rate(messages, first_ns, last_ns)


def noop_huey(adapter: Adapter, on_call: Callable[[], None] = lambda: None):
    """The pair's huey instance (same storage and serializer) with a no-op task."""
    huey, _ = adapter.build_huey()
    return huey, huey.task(name=NOOP_TASK)(lambda payload: on_call())


def noop_dramatiq(adapter: Adapter, on_call: Callable[[], None] = lambda: None):
    """The pair's dramatiq broker (same settings and middleware) with a no-op actor. It takes
    base64 text, as the pair's actor does: dramatiq's JSON carries no bytes."""
    import dramatiq

    broker = adapter.build_broker()
    actor = dramatiq.actor(lambda payload_base64: on_call(), actor_name=NOOP_TASK,
                           queue_name=adapter.queue, broker=broker)
    return broker, actor


def produce_task(adapter: Adapter, records: Sequence[list[StockRecord]], fmt: str,
                 messages: int) -> float:
    """Enqueue the no-op task with the library's own API: `task(payload)`, `actor.send(text)`."""
    if adapter.library == "huey":
        from queuebench.adapters.huey import close_storage

        huey, send = noop_huey(adapter)
        close = functools.partial(close_storage, huey)
    else:
        from queuebench.adapters.dramatiq import close_broker

        broker, actor = noop_dramatiq(adapter)

        def send(payload: bytes) -> None:
            actor.send(base64.b64encode(payload).decode("ascii"))

        close = functools.partial(close_broker, broker)
    try:
        started = time.perf_counter()
        for seq in range(messages):
            send(encode(records[seq], fmt))
        return rate(messages, time.perf_counter() - started)
    finally:
        close()


def consume_task(adapter: Adapter, messages: int, folder: Path, timeout: float) -> float:
    """Run the library's own worker on the no-op task until it handled `messages`."""
    argv = [WORKER_MODULES.get(arg, arg) for arg in adapter.consumer_argv()]
    if not set(WORKER_MODULES.values()) & set(argv):
        raise ValueError(f"{adapter.scheme}: no worker module of ours in its command line")
    done = folder / "bare-done"
    config = {"pair_url": adapter.url, "queue": adapter.queue, "variant": adapter.variant.name,
              "messages": messages, "done_path": str(done)}
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "bare-worker.log").open("ab") as log:
        worker = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **adapter.consumer_env(), BARE_ENV: json.dumps(config)})
    try:
        give_up = time.monotonic() + timeout
        while not done.exists():
            if worker.poll() is not None or time.monotonic() > give_up:
                raise ConsumerFailed(f"bare {adapter.library} worker: no {messages} calls "
                                     f"(exit code {worker.returncode}); see {folder}")
            time.sleep(WATCH_SEC)
        first_ns, last_ns = map(int, done.read_text().split())
    finally:
        stop(worker, adapter.graceful_stop_signal)
    return drain_rate(messages, first_ns, last_ns)


def stop(worker: subprocess.Popen[bytes], graceful: signal.Signals) -> None:
    if worker.poll() is None:
        worker.send_signal(graceful)
    try:
        worker.wait(STOP_TIMEOUT_SEC)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
