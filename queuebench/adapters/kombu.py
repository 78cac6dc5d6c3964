"""kombu's SimpleQueue over Redis and RabbitMQ, consumers as threads (seed 000's set-up).

Features: at-least-once. Each receive thread of `queuebench consume` has a SimpleQueue of its own
(its own channel) consuming into its buffer; it handles a message, then acks it. A
kombu Connection is not thread-safe, so the threads on one take turns on it (`SharedConnection`).
RabbitMQ pushes to each channel, so every thread works. kombu's Redis transport keeps one
consumer callback per queue name per Connection: every delivery of a connection lands in the
SimpleQueue that subscribed last, so one thread per connection handles everything (100 threads on
one connection: all 1,000 messages in one thread).
RabbitMQ requeues a dead connection's unacked messages at once; Redis keeps them in kombu's
`unacked` hash until the visibility timeout, when a running consumer's empty poll restores them.
Bytes travel as kombu's raw `application/data`: nothing is serialized.

Connection URL: `kombu+redis://127.0.0.1:6379/0`, `kombu+rabbitmq://guest:guest@127.0.0.1:5672//`.

Options: `threads_per_connection` (the variants: `default`, one Connection for every thread, as
the seed ran it; `connection-per-50`, the seed's own advice), `prefetch_count`, and on Redis
`visibility_timeout`. On RabbitMQ, `confirms` is the default with py-amqp's `confirm_publish`: each
publish waits for RabbitMQ's confirm.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from typing import TypeVar

from kombu import Connection
from kombu.exceptions import OperationalError
from kombu.simple import SimpleQueue

from queuebench.adapters.base import (
    DROPPED_BY_THE_LOOP,
    Adapter,
    Backlog,
    Capabilities,
    SizeLimit,
    Variant,
    base64_size,
    with_confirms,
)
from queuebench.adapters.redis_probe import redis_version
from queuebench.errors import BrokerUnreachable
from queuebench.redact import redact

RAW_CONTENT_TYPE = "application/data"  # kombu's name for bytes sent as they are
DRAIN_SLICE_SEC = 0.01  # the longest a turn waits for a delivery
WAKE_ANYWAY_SEC = 0.5  # a sleeping thread looks again this often (and sees a stop)
VISIBILITY_TIMEOUT_SEC = 30  # kombu's default is 3600 s; short, so a redelivery shows in a run
# kombu's Redis transport stores base64 of the body in a JSON envelope: 297 bytes around it,
# measured with an 8-character queue name, which appears twice in it.
REDIS_ENVELOPE_BYTES = 400
T = TypeVar("T")


class SharedConnection:
    """A kombu Connection and the receive threads that take turns on it.

    One thread at a time takes turns: each turn runs the calls the others left in order (acks,
    a new SimpleQueue, a cancel), then reads one delivery, for whichever thread's buffer it is. The
    others sleep until something is theirs (a delivery, a call done) or the turn-taker leaves to
    handle its own message and wakes one of them to read on. No thread blocks on the connection's
    lock, and none polls: a threading.Lock hands itself straight back to the thread that released
    it (100 threads holding it in turn: 125 msg/s on RabbitMQ), and 900 threads polling every
    50 ms left the 2 cores no time for messages (7 a second).
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.threads = 0
        self._turn = threading.Lock()
        self._calls: deque[tuple[Callable[[], object], Future | None]] = deque()
        self._idle: set[threading.Event] = set()

    def run(self, call: Callable[[], T], wake: threading.Event) -> T:
        """`call()` on the connection, in this thread's turn or in another's."""
        outcome: Future = Future()
        outcome.add_done_callback(lambda _: wake.set())
        self._calls.append((call, outcome))
        self.wait(wake, outcome.done)
        return outcome.result()

    def leave(self, call: Callable[[], object]) -> None:
        """`call()` in the next turn, without waiting for it (an ack); if it raises, the thread
        taking that turn raises: the connection is broken."""
        self._calls.append((call, None))

    def wait(self, wake: threading.Event, ready: Callable[[], bool]) -> None:
        """Take turns while nobody else does, else sleep on `wake`, until `ready()`."""
        took_turns = False
        while not ready():
            wake.clear()
            self._idle.add(wake)  # before trying: a turn-taker that leaves then wakes us
            if self._take_turn():
                took_turns = True
            else:
                wake.wait(WAKE_ANYWAY_SEC)
            self._idle.discard(wake)
        if took_turns:  # off to handle what came: one sleeper reads the connection now
            with suppress(KeyError):  # nobody sleeps
                self._idle.pop().set()

    def _take_turn(self) -> bool:
        if not self._turn.acquire(blocking=False):
            return False
        try:
            while self._calls:
                call, outcome = self._calls.popleft()
                if outcome is None:
                    call()
                    continue
                try:
                    outcome.set_result(call())
                except Exception as exc:
                    outcome.set_exception(exc)
            with suppress(TimeoutError):  # socket.timeout: nothing came this turn
                self.connection.drain_events(timeout=DRAIN_SLICE_SEC)
        finally:
            self._turn.release()
        return True


class ConnectionShares:
    """The connections of one consumer process, each serving up to `threads_per_connection`
    receive threads (None: all of them). `queuebench consume` makes an adapter per thread; they
    meet here, as the seed's threads met on one connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, int | None], list[SharedConnection]] = {}

    def take(self, adapter: KombuAdapter) -> SharedConnection:
        per = adapter.settings["threads_per_connection"]
        with self._lock:
            shares = self._open.setdefault(self._key(adapter), [])
            if not shares or (per is not None and shares[-1].threads >= per):
                shares.append(SharedConnection(adapter.connection()))
            shares[-1].threads += 1
            return shares[-1]

    def give_back(self, adapter: KombuAdapter, share: SharedConnection) -> None:
        with self._lock:
            share.threads -= 1
            if share.threads == 0:
                self._open[self._key(adapter)].remove(share)
                share.connection.release()

    @staticmethod
    def _key(adapter: KombuAdapter) -> tuple[str, int | None]:
        return adapter.broker_url, adapter.settings["threads_per_connection"]


CONSUMER_CONNECTIONS = ConnectionShares()


class KombuProducer:
    def __init__(self, connection: Connection, queue: SimpleQueue) -> None:
        self.connection = connection
        self.queue = queue

    def send(self, payload: bytes, *, key: str | None = None) -> None:
        self.queue.put(payload, content_type=RAW_CONTENT_TYPE, content_encoding="binary")

    def flush(self) -> None:
        """Every put was answered already (Redis: LPUSH)."""

    def close(self) -> None:
        self.queue.close()
        self.connection.release()


class RabbitMQProducer(KombuProducer):
    def flush(self) -> None:
        """A round trip on the channel: RabbitMQ's refusal of an earlier publish (it closes the
        channel; without confirms a publish does not wait) is raised here rather than lost."""
        self.queue.qsize()


def variants(prefetch_count: int, **broker_settings: object) -> tuple[Variant, ...]:
    def settings(threads_per_connection: int | None) -> dict[str, object]:
        return {"threads_per_connection": threads_per_connection,
                "prefetch_count": prefetch_count, "no_ack": False,
                "ack": "message.ack() after the handler returns", "accept": [RAW_CONTENT_TYPE],
                "publisher_confirms": False, **broker_settings}

    redelivery = float(broker_settings.get("visibility_timeout", 0))
    return (
        Variant("default", settings(None), redelivery_sec=redelivery,
                note="shared connection (seed 000's): every receive thread's SimpleQueue on one "
                     "kombu Connection, the threads taking turns to read it and ack"),
        Variant("connection-per-50", settings(50), redelivery_sec=redelivery,
                note="seed 000's advice for over 100 consumers: a Connection per 50 receive "
                     "threads"),
    )


class KombuAdapter(Adapter):
    library = "kombu"
    concurrency_unit = ("receive threads of one `queuebench consume` process, each with a "
                        "SimpleQueue (channel) of its own, sharing connections as the variant says")
    on_failure = f"{DROPPED_BY_THE_LOOP}; message.ack() removes it"
    transport: str  # kombu's scheme for the broker URL
    producer_class: type[KombuProducer] = KombuProducer

    @property
    def broker_url(self) -> str:
        return f"{self.transport}://{self.url.partition('://')[2]}"

    def connection(self, **options: object) -> Connection:
        """A Connection with the variant's transport options (and `options`), not yet open."""
        transport_options = {key: self.settings[key] for key in ("visibility_timeout",)
                             if key in self.settings}
        if self.settings.get("publisher_confirms"):  # py-amqp waits for each publish's confirm
            transport_options["confirm_publish"] = True
        return Connection(self.broker_url, transport_options={**transport_options, **options})

    def simple_queue(self, connection: Connection) -> SimpleQueue:
        return connection.SimpleQueue(self.queue, accept=[RAW_CONTENT_TYPE])

    def check_reachable(self, timeout: float) -> None:
        # Bounded by `timeout`: the Redis transport otherwise waits on a silent broker for ever.
        connection = self.connection(socket_timeout=timeout, socket_connect_timeout=timeout)
        connection.connect_timeout = timeout  # the AMQP handshake's bound
        try:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        except (*connection.connection_errors, OperationalError, OSError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BrokerUnreachable(redact(f"{self.scheme}: cannot reach {self.broker_url}: "
                                           f"{reason}")) from None
        finally:
            connection.release()

    def prepare(self) -> None:
        with self.connection() as connection:
            queue = self.simple_queue(connection)  # declares the queue
            queue.clear()
            queue.close()

    def delete_queue(self) -> None:
        with self.connection() as connection:
            self.simple_queue(connection).queue.delete()

    def producer(self) -> KombuProducer:
        connection = self.connection()
        return self.producer_class(connection, self.simple_queue(connection))

    def consume(self, handle: Callable[[bytes], None], stopping: threading.Event) -> None:
        share = CONSUMER_CONNECTIONS.take(self)
        wake = threading.Event()  # set by a delivery to this thread, or a call of its done
        try:
            queue = share.run(lambda: self._subscribe(share.connection, wake), wake)
            try:
                while not stopping.is_set():
                    share.wait(wake, lambda: bool(queue.buffer) or stopping.is_set())
                    if queue.buffer:
                        message = queue.buffer.popleft()
                        handle(message.body or b"")  # py-amqp gives an empty body as str ''
                        share.leave(message.ack)  # sent before this thread's next call
            finally:
                share.run(queue.close, wake)  # cancels the consumer; unacked messages go back
        finally:
            CONSUMER_CONNECTIONS.give_back(self, share)

    def _subscribe(self, connection: Connection, wake: threading.Event) -> SimpleQueue:
        queue = self.simple_queue(connection)
        queue.consumer.register_callback(lambda _body, _message: wake.set())
        queue.consumer.qos(prefetch_count=int(self.settings["prefetch_count"]))
        queue.consumer.consume()  # deliveries now land in queue.buffer, as SimpleQueue.get's do
        return queue


class KombuRedisAdapter(KombuAdapter):
    scheme = "kombu+redis"
    broker = "redis"
    transport = "redis"
    capabilities = Capabilities(
        ack="message.ack() after the handler returns (kombu's ack emulation: the copy in the "
            "`unacked` hash is deleted)",
        on_worker_killed="nothing lost: the messages it held stay in the `unacked` hash and are "
                         "restored to the list (a duplicate if the receipt was written)",
        redelivery_after="visibility_timeout (30 s here), then the next empty poll of a running "
                         "consumer (every 10th of them scans: kombu's restore throttle)",
        ordering="FIFO per list; restored messages go back to the consuming end. One thread per "
                 "connection receives every message (one consumer callback per queue name per "
                 "kombu Connection)",
        carries_bytes="raw application/data; the transport base64s the body inside a JSON "
                      "envelope (+33%)",
        serializer="none: the consumer reads message.body as bytes and accepts only "
                   "application/data, so a pickled message is refused, never unpickled",
        durability="nothing: SimpleQueue.put LPUSHes and kombu's Redis transport ignores "
                   "delivery_mode; the broker's own persistence (save, appendonly) decides",
    )
    size_limit = SizeLimit(
        max_bytes=512 * 1024 * 1024,  # proto-max-bulk-len
        error="redis-py ConnectionError ... Broken pipe: the server closes the connection"
              " (FIELD-NOTES; not measured here)",
        overhead=lambda n: base64_size(n) + REDIS_ENVELOPE_BYTES,
    )
    # One thread per connection receives everything here. With a prefetch of 1 each delivery
    # waited for the previous ack, sent at the next turn (100 threads: 80 msg/s); unlimited
    # (SimpleQueue's default) lets that thread's buffer outlive the visibility timeout.
    variants = variants(prefetch_count=10, visibility_timeout=VISIBILITY_TIMEOUT_SEC)

    def _unacked_tags(self, client) -> list[bytes]:
        """Delivery tags in kombu's `unacked` hash whose routing key is this queue."""
        from kombu.utils.json import loads

        return [tag for tag, entry in client.hscan_iter("unacked")
                if loads(entry)[2] == self.queue]

    def prepare(self) -> None:
        super().prepare()
        with self.connection() as connection:
            client = connection.default_channel.client
            for tag in self._unacked_tags(client):  # left by a killed consumer of an earlier run
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)

    def backlog(self) -> Backlog:
        with self.connection() as connection:
            client = connection.default_channel.client
            queued = client.llen(self.queue)
            unacked = len(self._unacked_tags(client))
        return Backlog(waiting=queued + unacked,
                       detail=f"{queued} in the list; {unacked} unacked, due back after the "
                              "visibility timeout once a consumer runs")

    def broker_version(self) -> str | None:
        return redis_version(self.broker_url)


class KombuRabbitMQAdapter(KombuAdapter):
    scheme = "kombu+rabbitmq"
    broker = "rabbitmq"
    transport = "amqp"
    capabilities = Capabilities(
        ack="basic.ack after the handler returns",
        on_worker_killed="nothing lost: RabbitMQ requeues the unacked messages of a closed "
                         "connection (a duplicate if the receipt was written)",
        redelivery_after="the broker sees the connection close: at once",
        ordering="FIFO per queue; redelivered messages return near the head",
        carries_bytes="raw application/data: AMQP carries the bytes as they are",
        serializer="none: the consumer reads message.body as bytes and accepts only "
                   "application/data, so a pickled message is refused, never unpickled",
        durability="SimpleQueue: durable queue and direct exchange, delivery_mode 2 (kombu's "
                   "defaults); no publisher confirms (py-amqp confirm_publish False) but in the "
                   "confirms variant",
    )
    size_limit = SizeLimit(
        max_bytes=128 * 1024 * 1024,  # max_message_size, RabbitMQ 3.10 (16 MiB on 4.x)
        error="406 PRECONDITION_FAILED - message size N is larger than configured max size "
              "134217728",
    )
    # 1 (SimpleQueue sets none): else a thread holds messages the idle threads could take.
    variants = with_confirms(variants(prefetch_count=1,
                                      heartbeat="none (kombu's Connection default)"),
                             publisher_confirms=True)
    producer_class = RabbitMQProducer

    def backlog(self) -> Backlog:
        with self.connection() as connection:
            ready = self.simple_queue(connection).qsize()
        return Backlog(waiting=ready, detail=f"{ready} ready (the unacked messages of a live "
                                             "consumer are not counted)")

    def broker_version(self) -> str | None:
        with self.connection() as connection:
            connection.ensure_connection(max_retries=1)
            version = connection.connection.server_properties.get("version", b"?")
        return "RabbitMQ " + (version.decode() if isinstance(version, bytes) else str(version))
