"""Dramatiq actors over Redis and RabbitMQ: the producer sends to an actor, `dramatiq` runs it.

Features: at-least-once. Dramatiq acks a message after the actor returns (`Worker.process_message`
then `post_process_message`), so a worker killed mid-task loses nothing: the task in hand and the
prefetched one (prefetch = 2 x threads = 2) come back, and a kill between the ledger receipt and
the ack gives a duplicate. How they come back differs by broker:

- RabbitMQ: the unacked messages are requeued by RabbitMQ the moment the worker's connection
  drops, which a SIGKILL does at once (the kernel closes the socket).
- Redis: a fetch moves message ids from the queue list into a per-worker set
  `dramatiq:__acks__.<worker id>.<queue>` (`brokers/redis/dispatch.lua`). Every command refreshes
  the worker's score in `dramatiq:__heartbeats__`; a "maintenance" pass, run inside a command
  with probability `maintenance_chance` per million (default 1000 = 0.1%), pushes back the sets
  of workers silent for `heartbeat_timeout` ms (default 60,000), but only for the queue that
  command named. So at the defaults a killed worker's messages wait 60 s and then, on average,
  1000 further commands on that queue: some 17 minutes for one idle worker polling once a second
  (arithmetic, not measured). The default variant therefore sets `heartbeat_timeout` to 10 s and
  `maintenance_chance` to every command (1,000,000), so they come back 10-11 s after the kill.
  A live worker stays fresh even in a long task: its delay-queue consumer (`<queue>.DQ`,
  prefetch 1000) fetches at least every `worker_timeout` (1 s), and that refreshes the heartbeat.
  The cost of a maintenance pass is one ZRANGEBYSCORE, plus a KEYS per dead worker until its
  sets are gone; `prepare` deletes every worker's sets for its queue so none is left behind.

Graceful stop: SIGTERM (or SIGINT, which the main process turns into SIGTERM) is noticed by the
worker process within a second (`cli.worker_process` sleeps 1 s between checks, and keeps
working meanwhile); it then finishes the task in hand, stops fetching and gives back what it
prefetched (Redis: `requeue` to the tail; RabbitMQ: closing the channel), within
`--worker-shutdown-timeout` (default 600 s). Measured: 2-2.6 s with 300 ms tasks. A second
SIGTERM kills the worker process (RET_KILLED).

Latency: the Redis consumer polls (no blocking pop); after each empty or full-prefetch poll it
sleeps 5 ms, doubling up to `worker_timeout` (1 s), so an idle worker picks up a new message up to
a second late, and at N=50 the median latency was 3x RabbitMQ's, where the broker pushes.

Bytes: dramatiq's default `JSONEncoder` cannot carry `bytes`, so the payload goes as base64 text
(+33%) in a JSON message of about 175 bytes of framing plus the queue name (Redis adds a 57-byte
`redis_message_id` option). The `PickleEncoder` would carry raw bytes, at the cost of unpickling
what the broker hands over; we keep the library's default encoder.

Publishing: `RabbitmqBroker(confirm_delivery=False)` (the default) does not wait for RabbitMQ, and
when RabbitMQ refuses a message (over `max_message_size`) it closes the channel; dramatiq then
retries the *next* message on a new channel, and the refused one would vanish unreported. The
producer here notices that replaced channel (and `flush` makes a round trip) and raises
`PublishRefused` with RabbitMQ's reason. The `confirms` variant sets `confirm_delivery=True`:
each publish waits for RabbitMQ's confirm, and a refusal raises in that send. Redis enqueues run a
Lua script and raise at once.

Connection URL: `dramatiq+redis://127.0.0.1:6379/0` (a `redis://` URL after the `+`);
`dramatiq+rabbitmq://guest:guest@127.0.0.1:5672//` (an `amqp://` URL; `//` is the vhost `/`).

Options (the `default` variant): the `dramatiq` command line (`processes`, `threads`,
`worker_shutdown_timeout_ms`), the library defaults that decide delivery (read from the installed
dramatiq, so they cannot drift: prefetch, idle timeout, middleware, `Retries` with 20 retries from
15 s, `TimeLimit` 10 min), and per broker the Redis heartbeat settings above or RabbitMQ's
`confirm_delivery` and prefetch. Dramatiq has no setting that acks before the task.

A failing actor: `Retries` enqueues the message again on the delay queue (`<queue>.DQ`) after
15 s, doubling with jitter up to 7 days, 20 times; then it is dead-lettered (`<queue>.XQ`, kept 7
days on Redis). By dramatiq's `compute_backoff` the 20 retries span 23 to 46 days, so a run with
failing messages at the defaults ends with retries pending (`failure_outcome` counts them). The
`short-retry` variant is what a user would set to give up sooner: `max_retries=3`, backoff from
100 ms up to 1 s, so a failing message is dead-lettered within about 1.5 s.
"""

from __future__ import annotations

import base64
import inspect
import signal
import sys
import time
from collections.abc import Mapping
from urllib.parse import quote

import dramatiq
from dramatiq.actor import Actor
from dramatiq.broker import Broker
from dramatiq.middleware import Retries, TimeLimit, default_middleware
from dramatiq.middleware.retries import DEFAULT_MAX_BACKOFF, DEFAULT_MIN_BACKOFF
from dramatiq.worker import QUEUE_PREFETCH, WORKER_TIMEOUT

from queuebench.adapters.base import (
    Adapter,
    Backlog,
    Capabilities,
    SizeLimit,
    Variant,
    base64_size,
    with_confirms,
)
from queuebench.errors import BrokerUnreachable, QueuebenchError, UsageError
from queuebench.redact import redact
from queuebench.worker.handler import handle

ACTOR_NAME = "queuebench_message"
QUEUE_SUFFIXES = ("", ".DQ", ".XQ")  # the queue, its delay queue and its dead letters
REDIS_NAMESPACE = "dramatiq"  # RedisBroker's default key prefix
# The JSON message around the base64 text: 174 bytes plus the queue name, measured with
# dramatiq 2.2 (ids and a 13-digit millisecond timestamp have fixed widths); Redis adds
# ',"redis_message_id":"<uuid>"' in the options. Queue names are bounded by RabbitMQ's 255 bytes,
# so the size check below can only err on the safe side, by at most that much.
JSON_FRAMING_BYTES = 174
REDIS_MESSAGE_ID_BYTES = 57
MAX_QUEUE_NAME_BYTES = 255
DEFAULT_HEARTBEAT_TIMEOUT_MS = 10_000  # dramatiq: 60,000
DEFAULT_MAINTENANCE_CHANCE = 1_000_000  # per million commands; dramatiq: 1,000 (0.1%)
DRAMATIQ_SERIALIZER = ("JSON (dramatiq's default JSONEncoder), nothing is unpickled; a message "
                       "runs only if its actor name is declared on the worker's broker")


def default_of(middleware: type, parameter: str) -> object:
    return inspect.signature(middleware).parameters[parameter].default


WORKER_SETTINGS = {  # dramatiq command-line option -> value
    "processes": ("--processes", 1),
    "threads": ("--threads", 1),
    "worker_shutdown_timeout_ms": ("--worker-shutdown-timeout", 600_000),  # dramatiq's default
}
LIBRARY_DEFAULTS = {
    "ack": "after the actor returns",
    "queue_prefetch": QUEUE_PREFETCH or 2 * WORKER_SETTINGS["threads"][1],  # as Worker sets it
    "worker_timeout_ms": WORKER_TIMEOUT,  # idle poll / wake-up interval
    "encoder": "JSONEncoder, payload as base64 text",
    "middleware": ", ".join(m.__name__ for m in default_middleware),
    "max_retries": default_of(Retries, "max_retries"),  # an actor that raised, after a backoff
    "retry_min_backoff_ms": DEFAULT_MIN_BACKOFF,
    "retry_max_backoff_ms": DEFAULT_MAX_BACKOFF,
    "time_limit_ms": default_of(TimeLimit, "time_limit"),
    "graceful_stop": "SIGTERM or SIGINT, taken within 1 s: the task in hand finishes, "
                     "prefetched ones go back",
}


# What users set to give up on a failing message in seconds rather than weeks.
SHORT_RETRY = {"max_retries": 3, "retry_min_backoff_ms": 100, "retry_max_backoff_ms": 1000}


def retrying_span_ms(settings: Mapping[str, object]) -> tuple[int, int]:
    """The shortest and longest time from a message's first failure to its last retry:
    dramatiq's `compute_backoff` waits min_backoff x 2^n times a jitter of 1 to 2, and brings a
    wait over max_backoff back to 50-100% of it."""
    low = high = 0
    cap = int(settings["retry_max_backoff_ms"])
    for n in range(int(settings["max_retries"])):
        backoff = int(settings["retry_min_backoff_ms"]) * 2**n
        low += backoff if 2 * backoff <= cap else min(backoff, cap // 2)
        high += min(2 * backoff, cap)
    return low, high


def describe_retries(settings: Mapping[str, object]) -> str:
    low, high = retrying_span_ms(settings)
    unit, per_unit = ("days", 86_400_000) if high > 86_400_000 else ("s", 1000)
    first_sec = int(settings["retry_min_backoff_ms"]) / 1000
    return (f"retried {settings['max_retries']} times with exponential backoff from "
            f"{first_sec:g} s, the last retry {low / per_unit:.1f} to {high / per_unit:.1f} "
            f"{unit} after the first failure; then dead-lettered (<queue>.XQ)")


def json_message_bytes(payload_bytes: int) -> int:
    return base64_size(payload_bytes) + JSON_FRAMING_BYTES + MAX_QUEUE_NAME_BYTES


def amqp_url(address: str) -> str:
    """kombu-style `user:pw@host:port//` (vhost `/`) as a URL pika reads: `.../%2F`."""
    address, question, query = address.partition("?")
    netloc, _, vhost = address.partition("/")
    return f"amqp://{netloc}/{quote(vhost or '/', safe='')}{question}{query}"


def deliver(payload_base64: str) -> None:
    """The actor: hand the payload to the shared handler; dramatiq acks when this returns."""
    handle(base64.b64decode(payload_base64))


def declare_actor(broker: Broker, queue: str, settings: Mapping[str, object]) -> Actor:
    """The one actor, under the same name, queue and retry options on the producer's and the
    worker's broker (the worker's decide: `Retries` reads them after a failure)."""
    return dramatiq.actor(deliver, actor_name=ACTOR_NAME, queue_name=queue, broker=broker,
                          max_retries=settings["max_retries"],
                          min_backoff=settings["retry_min_backoff_ms"],
                          max_backoff=settings["retry_max_backoff_ms"])


class PublishRefused(QueuebenchError):
    """RabbitMQ closed the publishing channel: a message was refused (or the link dropped)."""


class DramatiqProducer:
    def __init__(self, broker: Broker, queue: str, settings: Mapping[str, object]) -> None:
        self.broker = broker
        self.queue = queue
        self.actor = declare_actor(broker, queue, settings)

    def send(self, payload: bytes, *, key: str | None = None) -> None:
        self.actor.send(base64.b64encode(payload).decode("ascii"))

    def flush(self) -> None:
        """Redis: every enqueue is stored when its Lua script returns."""

    def close(self) -> None:
        close_broker(self.broker)


def close_broker(broker: Broker) -> None:
    broker.close()  # RabbitMQ: channels and connections
    client = getattr(broker, "client", None)
    if client is not None:  # RedisBroker.close() does nothing, leaving its pool connected
        client.connection_pool.disconnect()


class RabbitMQProducer(DramatiqProducer):
    def send(self, payload: bytes, *, key: str | None = None) -> None:
        channel = getattr(self.broker.state, "channel", None)  # per thread, made on first use
        super().send(payload)
        if channel is not None and getattr(self.broker.state, "channel", None) is not channel:
            # dramatiq met a closed channel, made a new one and sent this message on it: what
            # closed the old one was an earlier publish, which is gone.
            raise PublishRefused(f"RabbitMQ closed the channel after an earlier publish to "
                                 f"{self.queue!r}, which is lost: {closing_reason(channel)!r}")

    def flush(self) -> None:
        """A round trip on the publishing channel, so a refusal RabbitMQ sent is read now."""
        import pika.exceptions

        channel = self.broker.channel
        try:
            channel.queue_declare(self.queue, passive=True)
        except pika.exceptions.AMQPChannelError as exc:
            raise PublishRefused(f"RabbitMQ closed the channel publishing to {self.queue!r}: "
                                 f"{closing_reason(channel) or exc!r}") from None


def closing_reason(channel: object) -> object:
    # pika keeps why the broker closed a BlockingChannel only in this private attribute.
    return getattr(channel, "_closing_reason", None)


def variant_settings(**broker_settings: object) -> dict[str, object]:
    return {**{name: value for name, (_, value) in WORKER_SETTINGS.items()}, **LIBRARY_DEFAULTS,
            **broker_settings}


def dramatiq_variants(note: str, redelivery_sec: float = 0.0,
                      **broker_settings: object) -> tuple[Variant, ...]:
    """The library's defaults, and the same with the few quick retries users set for failures."""
    short_retry = {**variant_settings(**broker_settings), **SHORT_RETRY}
    return (
        Variant("default", variant_settings(**broker_settings), note=note,
                redelivery_sec=redelivery_sec),
        Variant("short-retry", short_retry, note=f"{note}; max_retries=3, backoff 0.1-1 s",
                redelivery_sec=redelivery_sec, on_failure=describe_retries(short_retry)),
    )


class DramatiqAdapter(Adapter):
    """What both brokers share: the worker command, the producer, one broker object for checks."""

    library = "dramatiq"
    concurrency_unit = ("worker threads of one worker process (dramatiq --processes 1 "
                        "--threads N; prefetch follows, 2 x threads)")
    graceful_stop_signal = signal.SIGTERM
    on_failure = describe_retries(LIBRARY_DEFAULTS)
    producer_class: type[DramatiqProducer] = DramatiqProducer

    def __init__(self, url: str, *, queue: str, variant: str = "default") -> None:
        super().__init__(url, queue=queue, variant=variant)
        self.address = url.partition("://")[2]
        if not self.address:
            raise UsageError(f"{url!r}: expected {self.scheme}://HOST:PORT/...")
        self._broker: Broker | None = None

    def build_broker(self) -> Broker:
        """A broker with this variant's settings; the worker module builds its own here too."""
        raise NotImplementedError

    @property
    def dramatiq_broker(self) -> Broker:
        if self._broker is None:
            self._broker = self.build_broker()
        return self._broker

    def consumer_argv(self, concurrency: int = 1) -> list[str]:
        """`dramatiq`, one process of `concurrency` worker threads (the variant's own `threads`,
        1, is what concurrency 1 gives)."""
        argv = [sys.executable, "-m", "dramatiq", "queuebench.adapters.dramatiq_worker:broker"]
        for name, (flag, _) in WORKER_SETTINGS.items():
            value = concurrency if name == "threads" and concurrency != 1 else self.settings[name]
            argv += [flag, str(value)]
        return [*argv, "--queues", self.queue]  # last: --queues takes every word after it

    def producer(self) -> DramatiqProducer:
        return self.producer_class(self.build_broker(), self.queue, self.settings)

    def cleanup(self) -> None:
        if self._broker is not None:
            close_broker(self._broker)
            self._broker = None


class DramatiqRedisAdapter(DramatiqAdapter):
    scheme = "dramatiq+redis"
    broker = "redis"
    capabilities = Capabilities(
        ack="after the actor returns (Lua `ack` deletes the message)",
        on_worker_killed="nothing lost: the task in hand and the prefetched one stay in the dead "
                         "worker's ack set and come back; a kill after the receipt but before "
                         "the ack gives a duplicate",
        redelivery_after="heartbeat_timeout (10 s here, 60 s by default) without a command from "
                         "the worker, then the next maintenance pass on that queue (every "
                         "command here; 0.1% of commands by default)",
        ordering="FIFO per queue with one worker; recovered messages go to the tail",
        carries_bytes="base64 text in dramatiq's JSON message (+33%, 231 bytes of framing "
                      "plus the queue name)",
        serializer=DRAMATIQ_SERIALIZER,
        durability="nothing: enqueue is a Lua script writing a hash and a list, dramatiq sets no "
                   "persistence option; the broker's own persistence (save, appendonly) decides",
    )
    size_limit = SizeLimit(
        max_bytes=512 * 1024 * 1024,  # proto-max-bulk-len, for the JSON message (one argument)
        error="Redis proto-max-bulk-len (512 MB): the server closes the connection; redis-py: "
              "ConnectionError ... Broken pipe",
        overhead=lambda n: json_message_bytes(n) + REDIS_MESSAGE_ID_BYTES,
    )
    variants = dramatiq_variants(
        "library defaults, except that a dead worker's messages come back after 10 s "
        "(dramatiq: 60 s, then a maintenance pass on 0.1% of commands)",
        redelivery_sec=DEFAULT_HEARTBEAT_TIMEOUT_MS / 1000,
        redis_heartbeat_timeout_ms=DEFAULT_HEARTBEAT_TIMEOUT_MS,
        redis_maintenance_chance_per_million=DEFAULT_MAINTENANCE_CHANCE,
        redis_dead_message_ttl_ms=7 * 86_400_000)

    def build_broker(self) -> Broker:
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=f"redis://{self.address}", namespace=REDIS_NAMESPACE,
                           heartbeat_timeout=self.settings["redis_heartbeat_timeout_ms"],
                           maintenance_chance=self.settings["redis_maintenance_chance_per_million"],
                           dead_message_ttl=self.settings["redis_dead_message_ttl_ms"])

    def check_reachable(self, timeout: float) -> None:
        from queuebench.adapters.redis_probe import check_redis

        check_redis(self.scheme, f"redis://{self.address}", timeout)

    def broker_version(self) -> str | None:
        from queuebench.adapters.redis_probe import redis_version

        return redis_version(f"redis://{self.address}")

    def prepare(self) -> None:
        broker = self.dramatiq_broker
        broker.declare_queue(self.queue)  # Redis keys appear with the first message
        broker.flush(self.queue)  # list, messages, dead letters, and this broker's own ack set
        # Every other worker's ack set too: a killed worker's would come back into the queue.
        workers = broker.client.zrange(f"{REDIS_NAMESPACE}:__heartbeats__", 0, -1)
        acks = [f"{REDIS_NAMESPACE}:__acks__.{worker.decode()}.{name}"
                for worker in workers for name in (self.queue, f"{self.queue}.DQ")]
        if acks:
            broker.client.delete(*acks)

    def backlog(self) -> Backlog:
        dead_before_ms = int(time.time() * 1000) - self.settings["redis_heartbeat_timeout_ms"]
        count = self.dramatiq_broker.client.register_script(BACKLOG_SCRIPT)
        queued, live, dead, dead_lettered, stored, due_ms = count(
            keys=[REDIS_NAMESPACE], args=[self.queue, dead_before_ms])
        orphans = max(0, stored - queued - live - dead)
        return Backlog(
            waiting=queued + live + dead, stranded=dead_lettered + orphans,
            due_at=tuple(eta / 1000 for eta in due_ms),
            detail=f"{queued} queued; {live} taken by live workers, {dead} by workers silent for"
                   f" over heartbeat_timeout (back at the next maintenance pass), all waiting as"
                   f" they will be acked or come back, {len(due_ms)} of them retries due later"
                   f" (.DQ); {dead_lettered} dead-lettered (.XQ, never redelivered); {orphans}"
                   f" stored but neither queued nor taken")

    def failure_outcome(self) -> dict[str, int]:
        """Dead-lettered messages (.XQ) and retries waiting out their backoff (.DQ, queued or
        taken by a worker that holds them until they are due)."""
        client, prefix = self.dramatiq_broker.client, f"{REDIS_NAMESPACE}:{self.queue}"
        return {"dead_lettered": client.zcard(f"{prefix}.XQ"),
                "retry_pending": client.hlen(f"{prefix}.DQ.msgs")}


# Counted in one script, so that no message moves between list and ack set while we count.
BACKLOG_SCRIPT = """
local ns, queue, dead_before = KEYS[1], ARGV[1], tonumber(ARGV[2])
local q, dq = ns .. ":" .. queue, ns .. ":" .. queue .. ".DQ"
local queued = redis.call("llen", q) + redis.call("llen", dq)
local stored = redis.call("hlen", q .. ".msgs") + redis.call("hlen", dq .. ".msgs")
local live, dead = 0, 0
local workers = redis.call("zrange", ns .. ":__heartbeats__", 0, -1, "withscores")
for i = 1, #workers, 2 do
  local acks = ns .. ":__acks__." .. workers[i] .. "." .. queue
  local taken = redis.call("scard", acks) + redis.call("scard", acks .. ".DQ")
  if tonumber(workers[i + 1]) < dead_before then dead = dead + taken else live = live + taken end
end
-- When each retry on the delay queue, queued or held by a worker until then, is due (its eta).
local due = {}
for _, data in ipairs(redis.call("hvals", dq .. ".msgs")) do
  local eta = cjson.decode(data).options.eta
  if eta then due[#due + 1] = eta end
end
return {queued, live, dead, redis.call("zcard", q .. ".XQ"), stored, due}
"""


class DramatiqRabbitMQAdapter(DramatiqAdapter):
    scheme = "dramatiq+rabbitmq"
    broker = "rabbitmq"
    capabilities = Capabilities(
        ack="after the actor returns (basic_ack)",
        on_worker_killed="nothing lost: RabbitMQ requeues the task in hand and the prefetched "
                         "one when the connection drops; a kill after the receipt but before "
                         "the ack gives a duplicate",
        redelivery_after="at once: the connection closes with the process",
        ordering="FIFO per queue with one worker; requeued messages keep their place",
        carries_bytes="base64 text in dramatiq's JSON message (+33%, 174 bytes of framing "
                      "plus the queue name)",
        serializer=DRAMATIQ_SERIALIZER,
        durability="durable queues (the queue, .DQ, .XQ) and delivery_mode 2, both fixed by "
                   "RabbitmqBroker; no publisher confirms (confirm_delivery False, its "
                   "default) but in the confirms variant",
    )
    size_limit = SizeLimit(
        max_bytes=128 * 1024 * 1024,  # max_message_size of RabbitMQ 3.10, for the message body
        error="ChannelClosedByBroker: (406) 'PRECONDITION_FAILED - message size N is larger "
              "than configured max size 134217728' (pika; raised here as PublishRefused by "
              "flush or the next send, as dramatiq's publish does not wait for it)",
        overhead=json_message_bytes,
    )
    variants = with_confirms(dramatiq_variants(
        "library defaults",
        rabbitmq_prefetch_count=LIBRARY_DEFAULTS["queue_prefetch"],  # basic_qos
        rabbitmq_confirm_delivery=False,
        rabbitmq_delivery_mode="2 (persistent), durable queues",
        rabbitmq_heartbeat="negotiated: RabbitMQ's 60 s"), rabbitmq_confirm_delivery=True)
    producer_class = RabbitMQProducer

    def build_broker(self) -> Broker:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=amqp_url(self.address),
                              confirm_delivery=self.settings["rabbitmq_confirm_delivery"])

    def _connect(self, timeout: float):
        import pika

        parameters = pika.URLParameters(amqp_url(self.address))
        parameters.connection_attempts = 1
        parameters.socket_timeout = parameters.stack_timeout = timeout
        parameters.blocked_connection_timeout = timeout
        return pika.BlockingConnection(parameters)

    def check_reachable(self, timeout: float) -> None:
        import pika.exceptions
        from pika.adapters.utils.connection_workflow import AMQPConnectorException

        try:  # connects and closes; declares nothing
            self._connect(timeout).close()
        # A silent broker ends in AMQPConnectorStackTimeout, which is no AMQPError.
        except (pika.exceptions.AMQPError, AMQPConnectorException, OSError) as exc:
            raise BrokerUnreachable(redact(f"{self.scheme}: cannot reach "
                                           f"{amqp_url(self.address)}: {exc!r}")) from None

    def broker_version(self) -> str | None:
        connection = self._connect(5.0)
        try:  # pika exposes the server's properties only on the underlying connection
            version = connection._impl.server_properties.get("version", b"?")
            return "RabbitMQ " + (version.decode() if isinstance(version, bytes) else version)
        finally:
            connection.close()

    def prepare(self) -> None:
        broker = self.dramatiq_broker
        broker.declare_queue(self.queue, ensure=True)  # the queue, its .DQ and its .XQ
        broker.flush(self.queue)

    def delete_queue(self) -> None:
        channel = self.dramatiq_broker.channel
        for suffix in QUEUE_SUFFIXES:
            channel.queue_delete(self.queue + suffix)

    def ready_counts(self) -> dict[str, int]:
        """Messages ready in the queue, its .DQ and its .XQ (those a consumer holds unacked
        are not counted by RabbitMQ)."""
        channel = self.dramatiq_broker.channel
        return {suffix: channel.queue_declare(self.queue + suffix, passive=True)
                .method.message_count for suffix in QUEUE_SUFFIXES}

    def failure_outcome(self) -> dict[str, int]:
        """Dead-lettered messages, and retries waiting out their backoff (.DQ) or due and moved
        back to the queue. Counted once the workers stopped: a running worker holds the retries
        unacked, which RabbitMQ does not count. After a run that received every message, what
        is queued is a retry."""
        ready = self.ready_counts()
        return {"dead_lettered": ready[".XQ"], "retry_pending": ready[""] + ready[".DQ"]}

    def backlog(self) -> Backlog:
        ready = self.ready_counts()
        queued = ready[""] + ready[".DQ"]
        return Backlog(
            waiting=queued, stranded=ready[".XQ"],
            detail=f"{queued} ready (queue and .DQ); messages a live consumer holds unacked are"
                   f" not in RabbitMQ's message_count; {ready['.XQ']} dead-lettered (.XQ, never"
                   f" redelivered)")
