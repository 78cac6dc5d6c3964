"""Celery 5 over kombu transports: one task, `queuebench.process`, hands each message on.

Features: Celery acks a task when the pool accepts it, before it runs (`task_acks_late=False`);
the `acks-late` variant acks after it returns and, with `task_reject_on_worker_lost`, requeues a
task whose pool child died. The consumer is Celery's own worker (prefork pool, one child); SIGTERM
is its warm shutdown: it finishes the tasks it holds, then hands any unacked message back. No
result backend. Bytes go through kombu's JSON: base64 inside the body (escaped JSON text instead
when the bytes happen to be UTF-8), and the virtual transports (sqla, redis, SQS) base64 that body
again; 17 KB of random bytes measured 33,982 bytes on sqla, 33,988 on Redis, 23,328 (body) on
RabbitMQ and 45,320 on SQS, where a further base64 of the whole message makes 1 MiB hold 440 KB.

SIGKILL on the SQLAlchemy transport (kombu 5.7; read in its source, seen in tests/test_celery.py):
the task in hand and the one the worker holds are lost in BOTH variants. `kombu/transport/
sqlalchemy/__init__.py` `Channel._get` marks the fetched row `visible=False` and commits at once;
nothing sets it back or deletes it (`basic_ack` is the virtual `QoS.ack`, which only forgets the
tag in the worker's memory, so acked rows stay too). Unacked messages live only in that memory
(`kombu/transport/virtual/base.py` `QoS._delivered`) and are re-inserted as new rows by
`QoS.restore_unacked_once` when the channel closes, which a killed worker never does; there is no
visibility timeout (`restore_visible` exists for Redis only). So on sqla `task_acks_late` saves a
task from a dead pool child (the surviving main process requeues it after `worker_lost_wait`),
never from a dead worker. The worker holds one task beyond the running one, whatever the prefetch
multiplier: sqla has no event loop, and the main process blocks in the pool's `apply_async` while
the only child is busy (`worker_pool_putlocks`). An idle worker takes about 6 s to stop warm.

The other transports, seen in one kill-and-restart run each (12 messages, 200 ms tasks): RabbitMQ
and Redis lose the running task by default and nothing with acks-late; the prefetched ones come
back at once on RabbitMQ, after `visibility_timeout` plus a restore sweep on Redis. SQS deletes the
running task on accept by default (lost); with acks-late it came back after the queue's 30 s
visibility timeout.

Connection URL: `celery+sqlite:///relative/path.sqlite` (made absolute for the worker, as
`sqla+sqlite:////abs/path`), `celery+redis://127.0.0.1:6379/0`,
`celery+rabbitmq://guest:guest@127.0.0.1:5672//`, `celery+sqs://127.0.0.1:9324` (ElasticMQ,
dummy credentials, queue created by kombu with the variant's visibility timeout).

Options: the variants (`default`, `acks-late`) set and record every Celery setting that decides
delivery; `broker_transport_options.*` are kombu transport options. kombu's sqla transport hands
every transport option to `create_engine()`, so its polling interval (1 s between empty polls)
cannot be set. On RabbitMQ a third variant, `confirms`, is the default with kombu's
`confirm_publish`: `send_task` returns once RabbitMQ confirmed the publish.
"""
from __future__ import annotations

import signal
import sys
import uuid
from pathlib import Path

from celery import Celery
from kombu import Queue
from kombu.exceptions import OperationalError

from queuebench.adapters.base import (
    Adapter,
    Backlog,
    Capabilities,
    SizeLimit,
    Variant,
    base64_size,
    with_confirms,
)
from queuebench.adapters.sqlite_probe import check_sqlite_file
from queuebench.errors import BrokerUnreachable, UsageError
from queuebench.redact import redact
from queuebench.worker.handler import handle

TASK_NAME = "queuebench.process"
TRANSPORT_OPTION = "broker_transport_options."
DEFAULT_VISIBILITY_TIMEOUT_SEC = 30  # short, so that a redelivery shows within one run
# Celery's JSON task body around the base64 of the payload:
# [[{"__type__": "base64", "__value__": "..."}], {}, {"callbacks": null, ...}]
TASK_BODY_FRAMING_BYTES = 116
# Headers and properties around the body: measured 831 bytes for a 1-byte payload and 2,878 for
# 17 KB; `argsrepr` (a repr of the arguments) is capped by Celery at 1,024 characters.
MESSAGE_FRAMING_MAX_BYTES = 3_000
# Celery's defaults, task_serializer "json" and accept_content ["json"], which no variant changes.
CELERY_SERIALIZER = ("JSON (Celery's default task_serializer; accept_content is json only, so a "
                     "message in pickle or any other format is refused); a task runs only if "
                     "the worker registered its name")


def task_body_bytes(payload_bytes: int) -> int:
    """Celery's JSON body for one bytes argument that is not UTF-8 (kombu base64s it)."""
    return base64_size(payload_bytes) + TASK_BODY_FRAMING_BYTES


def virtual_transport_wire_bytes(payload_bytes: int) -> int:
    """kombu's virtual transports (sqla, redis, SQS) base64 the whole JSON body once more."""
    return base64_size(task_body_bytes(payload_bytes)) + MESSAGE_FRAMING_MAX_BYTES


def celery_variants(redelivery_sec: float = 0.0, **transport_options: object
                    ) -> tuple[Variant, ...]:
    """The two variants, each with every value that decides delivery written out."""
    common = {"worker_pool": "prefork", "worker_concurrency": 1, "worker_prefetch_multiplier": 4,
              "worker_lost_wait": 10.0,  # how long before a dead pool child's task is given up
              **{TRANSPORT_OPTION + key: value for key, value in transport_options.items()}}
    return (
        Variant("default", {"task_acks_late": False, "task_reject_on_worker_lost": False, **common},
                note="Celery's defaults: ack when the pool accepts the task, before it runs",
                redelivery_sec=redelivery_sec),
        Variant("acks-late", {"task_acks_late": True, "task_reject_on_worker_lost": True, **common},
                note="ack after the task returns; requeue it if the pool child dies",
                redelivery_sec=redelivery_sec),
    )


def _process(message: bytes) -> None:
    handle(message)


class CeleryProducer:
    def __init__(self, app: Celery, queue: str) -> None:
        self.app = app
        self.queue = queue

    def send(self, payload: bytes, *, key: str | None = None) -> None:
        # send_task publishes synchronously and raises once Celery's publish retries run out.
        self.app.send_task(TASK_NAME, args=(payload,), queue=self.queue)

    def flush(self) -> None:
        """Every send has been handed to the broker already."""

    def close(self) -> None:
        self.app.close()


class CeleryAdapter(Adapter):
    scheme = "celery+sqlite"
    library = "celery"
    broker = "sqlite"
    capabilities = Capabilities(
        ack="default: when the pool accepts the task, before it runs; acks-late: after it returns."
            " On this transport an ack touches no row: a fetched row is marked visible=0 at once",
        on_worker_killed="SIGKILL of the worker: the running task and the one it holds are lost"
                         " in both variants (their rows stay visible=0 forever); SIGKILL of the"
                         " pool child only: acks-late requeues the task, default loses it",
        redelivery_after="never after SIGKILL (no visibility timeout); a warm shutdown finishes"
                         " what it holds and re-inserts any unacked message as a new row",
        ordering="FIFO by row id; requeued messages go to the back",
        carries_bytes="kombu JSON wraps bytes as base64 ({'__type__': 'base64'}; UTF-8-valid "
                      "bytes go as an escaped JSON string) and the virtual transport base64s "
                      "the whole body again: 17 KB random bytes are 33,982 bytes in the row",
        serializer=CELERY_SERIALIZER,
        durability="each publish is an INSERT that kombu's sqla transport commits at once, with "
                   "SQLite's defaults (rollback journal, synchronous FULL)",
    )
    size_limit = SizeLimit(
        max_bytes=1_000_000_000,  # SQLITE_MAX_LENGTH; the JSON message is one TEXT value
        # seen with SQLITE_LIMIT_LENGTH lowered to 20,000 and a 17 KB payload
        error="sqlalchemy.exc.DataError: (sqlite3.DataError) string or blob too big",
        overhead=virtual_transport_wire_bytes,
    )
    variants = celery_variants()  # no transport options: sqla would pass them to create_engine
    concurrency_unit = "prefork pool children of one worker (celery worker --concurrency N)"
    graceful_stop_signal = signal.SIGTERM  # warm shutdown
    on_failure = ("not retried (no autoretry_for): the worker logs it as FAILURE and acks it, "
                  "acks-late too (task_acks_on_failure_or_timeout); with no result backend "
                  "nothing keeps it (dropped)")

    def __init__(self, url: str, *, queue: str, variant: str = "default") -> None:
        super().__init__(url, queue=queue, variant=variant)
        self.broker_url = self.map_url(url)
        self._app: Celery | None = None

    # --- what differs by broker -------------------------------------------------------------

    @classmethod
    def map_url(cls, url: str) -> str:
        """The pair URL as a kombu broker URL."""
        address = url.partition("://")[2]
        if not address.startswith("/") or len(address) < 2:
            raise UsageError(f"{cls.scheme} needs a file: {cls.scheme}:///path/queue.sqlite "
                             "(the worker is another process, so no in-memory database)")
        return f"sqla+sqlite:///{Path(address[1:]).resolve()}"

    def backlog(self) -> Backlog:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.broker_url.removeprefix("sqla+"))
        try:
            with engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT m.visible, count(*) FROM kombu_message m JOIN kombu_queue q"
                    " ON m.queue_id = q.id WHERE q.name = :queue GROUP BY m.visible"),
                    {"queue": self.queue}).all()
        finally:
            engine.dispose()
        counts = {bool(visible): n for visible, n in rows}
        waiting, delivered = counts.get(True, 0), counts.get(False, 0)
        # kombu keeps every delivered row, acked or not, and never delivers it again: the table
        # cannot tell a stranded message from a processed one.
        return Backlog(
            waiting=waiting, stranded=None,
            detail=f"{waiting} rows visible (waiting); {delivered} rows taken, processed or "
                   "stranded alike (kombu keeps both)")

    def broker_version(self) -> str | None:
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"

    # --- the same for every broker ----------------------------------------------------------

    @property
    def app(self) -> Celery:
        if self._app is None:
            self._app = self.build_app()
        return self._app

    def build_app(self) -> Celery:
        """A Celery app for this pair and variant, with the task registered; no global state."""
        if self.broker_url.startswith("sqla+sqlite:///"):
            Path(self.broker_url.removeprefix("sqla+sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True)
        app = Celery("queuebench", broker=self.broker_url, set_as_current=False)
        settings = dict(self.settings)
        transport_options = {key.removeprefix(TRANSPORT_OPTION): settings.pop(key)
                             for key in list(settings) if key.startswith(TRANSPORT_OPTION)}
        app.conf.update(
            task_default_queue=self.queue,
            task_ignore_result=True,
            broker_transport_options=transport_options,
            broker_connection_retry_on_startup=True,  # Celery's behaviour; set to mute its warning
            **settings,
        )
        app.task(name=TASK_NAME, shared=False)(_process)
        return app

    def consumer_argv(self, concurrency: int = 1) -> list[str]:
        """`celery worker`, its prefork pool `concurrency` children strong (the variants' own
        worker_concurrency, 1, is what concurrency 1 gives)."""
        children = self.settings["worker_concurrency"] if concurrency == 1 else concurrency
        # A node name of its own: on RabbitMQ each worker declares an exclusive queue named
        # after it (remote control), which a second worker of the same name is refused.
        return [sys.executable, "-m", "celery", "-A", "queuebench.adapters.celery_worker",
                "worker", "-Q", self.queue, "-n", f"{self.queue}-{uuid.uuid4().hex[:8]}@%h",
                "--pool", str(self.settings["worker_pool"]), "--concurrency", str(children),
                "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]

    def check_reachable(self, timeout: float) -> None:
        # Connects and asks, declares nothing: a queue declare creates the queue on RabbitMQ and
        # SQS, and on sqla the database file, kombu's tables and a queue row.
        if self.broker_url.startswith("sqla+sqlite:///"):
            check_sqlite_file(self.scheme, Path(self.broker_url.removeprefix("sqla+sqlite:///")))
            return
        # Bounded by `timeout`: kombu's Redis and SQS transports otherwise wait for a silent
        # broker without end (no socket timeout) or for minutes (botocore's 60 s and retries).
        options = {"redis": {"socket_timeout": timeout, "socket_connect_timeout": timeout},
                   "sqs": {"client-config": {"connect_timeout": timeout / 2,
                                             "read_timeout": timeout / 2,
                                             "retries": {"total_max_attempts": 1}}},
                   }.get(self.broker, {})
        conn = self.app.connection_for_write(connect_timeout=timeout, transport_options=options)
        try:
            # Opening the connection is the question: an AMQP handshake, a PING (Redis), a
            # ListQueues (SQS). The one retry comes at once, so that both fit in `timeout`.
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        # ensure_connection re-raises a refused connection as kombu's OperationalError, which
        # the Redis transport does not list among its connection errors.
        except (*conn.connection_errors, *conn.channel_errors, OperationalError, OSError
                ) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BrokerUnreachable(redact(f"{self.scheme}: cannot reach {conn.as_uri()}: "
                                           f"{reason}")) from None
        finally:
            conn.release()

    def prepare(self) -> None:
        with self.app.connection_for_write() as conn:
            queue = Queue(self.queue).bind(conn.default_channel)
            queue.declare()
            queue.purge()

    def producer(self) -> CeleryProducer:
        return CeleryProducer(self.build_app(), self.queue)

    def cleanup(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None


class CeleryRedisAdapter(CeleryAdapter):
    """Celery over kombu's Redis transport: a list per queue, unacked messages in a hash."""

    scheme = "celery+redis"
    broker = "redis"
    capabilities = Capabilities(
        ack="default: when the pool accepts the task, before it runs; acks-late: after it returns",
        on_worker_killed="default: the running task is lost, held ones come back; acks-late: all"
                         " come back (after a receipt but before the ack: a duplicate)",
        redelivery_after="visibility_timeout, then the next restore sweep of a running worker"
                         " (at its start, then every unacked_restore_interval x _throttle s)",
        ordering="FIFO per list; restored messages go back to the consuming end",
        carries_bytes="kombu JSON wraps bytes as base64 ({'__type__': 'base64'}; UTF-8-valid "
                      "bytes go as an escaped JSON string) and the virtual transport base64s "
                      "the whole body again (as on sqla)",
        serializer=CELERY_SERIALIZER,
        durability="nothing: kombu's Redis transport LPUSHes, task_default_delivery_mode 2 "
                   "means nothing to it; the broker's own persistence (save, appendonly) decides",
    )
    size_limit = SizeLimit(
        max_bytes=512 * 1024 * 1024,  # proto-max-bulk-len
        error="redis-py ConnectionError ... Broken pipe: the server closes the connection"
              " (FIELD-NOTES; not measured here)",
        overhead=virtual_transport_wire_bytes,
    )
    variants = celery_variants(2 * DEFAULT_VISIBILITY_TIMEOUT_SEC,
                               visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT_SEC,
                               # a sweep every 10 s (kombu's default throttle: every 100 s)
                               unacked_restore_interval=10, unacked_restore_throttle=1)

    @classmethod
    def map_url(cls, url: str) -> str:
        return "redis://" + url.partition("://")[2]

    def _client(self):
        import redis

        return redis.Redis.from_url(self.broker_url, socket_timeout=10)

    def _unacked_tags(self, client) -> list[bytes]:
        """Delivery tags in kombu's `unacked` hash whose routing key is this queue."""
        from kombu.utils.json import loads

        return [tag for tag, entry in client.hscan_iter("unacked")
                if loads(entry)[2] == self.queue]

    def prepare(self) -> None:
        super().prepare()
        with self._client() as client:
            for tag in self._unacked_tags(client):  # left by a killed worker of an earlier run
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)

    def backlog(self) -> Backlog:
        with self._client() as client:
            queued = client.llen(self.queue)
            unacked = len(self._unacked_tags(client))
        return Backlog(waiting=queued + unacked,
                       detail=f"{queued} in the list; {unacked} unacked, due back after the "
                              "visibility timeout once a worker runs")

    def broker_version(self) -> str | None:
        from queuebench.adapters.redis_probe import redis_version

        return redis_version(self.broker_url)


class CeleryRabbitMQAdapter(CeleryAdapter):
    """Celery over py-amqp: RabbitMQ holds unacked messages per connection."""

    scheme = "celery+rabbitmq"
    broker = "rabbitmq"
    capabilities = Capabilities(
        ack="default: when the pool accepts the task, before it runs; acks-late: after it returns",
        on_worker_killed="default: the running task is lost, prefetched ones come back;"
                         " acks-late: all come back (a duplicate if the receipt was written)",
        redelivery_after="the broker sees the connection close: at once",
        ordering="FIFO per queue; redelivered messages return near the head",
        carries_bytes="kombu JSON wraps bytes as base64 ({'__type__': 'base64'}; UTF-8-valid "
                      "bytes go as an escaped JSON string); AMQP carries that body as it is",
        serializer=CELERY_SERIALIZER,
        durability="durable queue and exchange (kombu's defaults), task_default_delivery_mode 2 "
                   "(persistent); no publisher confirms (confirm_publish False, kombu's "
                   "default) but in the confirms variant",
    )
    size_limit = SizeLimit(
        max_bytes=128 * 1024 * 1024,  # max_message_size, RabbitMQ 3.10 (16 MiB on 4.x)
        error="406 PRECONDITION_FAILED - message size N is larger than configured max size "
              "134217728",
        overhead=task_body_bytes,  # the limit is on the body; headers travel in their own frame
    )
    variants = with_confirms(celery_variants(confirm_publish=False),
                             **{TRANSPORT_OPTION + "confirm_publish": True})

    @classmethod
    def map_url(cls, url: str) -> str:
        return "amqp://" + url.partition("://")[2]

    def delete_queue(self) -> None:
        with self.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(self.queue)

    def backlog(self) -> Backlog:
        with self.app.connection_for_write() as conn:
            _, ready, consumers = conn.default_channel.queue_declare(self.queue, passive=True)
        return Backlog(waiting=ready, detail=f"{ready} ready ({consumers} consumers; the unacked "
                                             "messages of a live consumer are not counted)")

    def broker_version(self) -> str | None:
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            version = conn.connection.server_properties.get("version", b"?")
        return "RabbitMQ " + (version.decode() if isinstance(version, bytes) else str(version))


class CelerySQSAdapter(CeleryAdapter):
    """Celery over kombu's SQS transport (boto3, pycurl), here against ElasticMQ."""

    scheme = "celery+sqs"
    broker = "sqs"
    capabilities = Capabilities(
        ack="default: when the pool accepts the task, before it runs (DeleteMessage);"
            " acks-late: after it returns",
        on_worker_killed="default: the running task is lost, held ones come back; acks-late: all"
                         " come back (a duplicate if the receipt was written)",
        redelivery_after="the queue's visibility timeout (kombu creates the queue with it)",
        ordering="best effort (standard queue)",
        carries_bytes="kombu JSON wraps bytes as base64, the transport base64s the body and then"
                      " the whole JSON message again (sqs_base64_encoding)",
        serializer=CELERY_SERIALIZER,
        durability="nothing the library sets: SendMessage returns once the service stored the "
                   "message (AWS: in several AZs; ElasticMQ: in memory, no messages-storage)",
    )
    size_limit = SizeLimit(
        max_bytes=1024 * 1024,  # SQS since 2025; ElasticMQ 1.7 with sqs-limits = strict
        error="botocore InvalidAttributeValue ... SendMessage operation: MessageTooLong"
              " (ElasticMQ); AWS: InvalidParameterValue ... Message must be shorter than"
              " 1048576 bytes",
        overhead=lambda n: base64_size(virtual_transport_wire_bytes(n)),
    )
    # kombu waits polling_interval before polling again whenever the prefetch window is full,
    # not only after an empty poll: at its default of 1 s a one-child worker took 4 tasks a
    # second (celery/celery#6352). Empty polls still wait server-side (wait_time_seconds).
    variants = celery_variants(2 * DEFAULT_VISIBILITY_TIMEOUT_SEC,
                               visibility_timeout=DEFAULT_VISIBILITY_TIMEOUT_SEC,
                               region="elasticmq", wait_time_seconds=10, polling_interval=0.05)

    @classmethod
    def map_url(cls, url: str) -> str:
        address = url.partition("://")[2].lstrip("/")
        if "@" in address:  # kombu would read AWS keys from it; ElasticMQ takes the dummy ones
            raise UsageError(f"{redact(url)!r}: expected {cls.scheme}://HOST:PORT, without "
                             "credentials (ElasticMQ; dummy ones are set)")
        return "sqs://queuebench:queuebench@" + address

    _sqs = None  # a boto3 client of the same service, made by _client()

    def _client(self):
        """A boto3 client for what kombu's transport does not do (count a queue's messages,
        delete it), made once: the backlog is asked every second while a run settles."""
        from queuebench.adapters.sqs_common import endpoint_for, sqs_client

        if self._sqs is None:
            host = self.broker_url.partition("@")[2].rstrip("/")
            self._sqs = sqs_client(endpoint_for(f"{self.scheme}://{host}"))
        return self._sqs

    def cleanup(self) -> None:
        super().cleanup()
        if self._sqs is not None:
            self._sqs.close()
            self._sqs = None

    def delete_queue(self) -> None:
        from queuebench.adapters.sqs_common import delete_queue_named

        # kombu's SQS channel deletes only queues it bound in this connection: none here.
        delete_queue_named(self._client(), self.queue)

    def backlog(self) -> Backlog:
        from botocore.exceptions import ClientError

        from queuebench.adapters.sqs_common import QUEUE_GONE, queue_gone

        client = self._client()
        try:
            url = client.get_queue_url(QueueName=self.queue)["QueueUrl"]
            attributes = client.get_queue_attributes(QueueUrl=url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
        except ClientError as exc:
            if queue_gone(exc):
                return QUEUE_GONE
            raise
        visible = int(attributes["ApproximateNumberOfMessages"])
        in_flight = int(attributes["ApproximateNumberOfMessagesNotVisible"])
        return Backlog(waiting=visible + in_flight,
                       detail=f"{visible} visible; {in_flight} in flight, due back after the "
                              "visibility timeout")

    def broker_version(self) -> str | None:
        return None  # the SQS API does not tell

