"""Huey tasks over SQLite (and Redis): the producer enqueues a task, `huey_consumer` runs it.

Features: at-most-once. Huey's `dequeue` removes the task from the broker before the worker runs
it (SQLite: select and delete in one transaction; Redis: BRPOP), and nothing acknowledges it
afterwards. So a worker killed mid-task loses that task, and no lease or heartbeat ever brings it
back. The same holds when the broker's connection fails between the dequeue and the run: the
worker's revocation check (a query before each task) raises, huey logs "Unhandled error during
execution of task" and drops the task unrun (a 3 s network black hole on huey+postgres lost one
acknowledged task in 2 of 31 runs here). Stopping `huey_consumer` with SIGINT is graceful:
workers finish the task in hand and take no new one (no time limit unless `-t`). SIGTERM
stops at once: with thread workers the process exits and the task in hand is dropped with it.
Huey 3.5 can swap the two with `-g TERM`.

Huey has no at-least-once setting (nothing like Celery's `acks_late`): `retries` re-run a task
that raised, not one whose worker died. The nearest thing is the `SIGNAL_INTERRUPTED` hook, which
the consumer emits for tasks in flight when it exits on SIGTERM and which an application may use to
enqueue them again; on SIGKILL nothing runs. Hence the single `default` variant.

Connection URL: `huey+sqlite:///relative/or/absolute.sqlite` (resolved to an absolute path here,
because the worker is another process); `huey+redis://127.0.0.1:6379/0`;
`huey+postgres://user:password@127.0.0.1:5432/db` (PostgresHuey: the dequeue is a
`DELETE ... FOR UPDATE SKIP LOCKED`, and idle workers wait on LISTEN/NOTIFY instead of polling).
The huey instance is named after the queue, which is how huey keeps queues apart in one database
(on Redis huey drops the name's non-alphanumeric characters).

Serializer: huey pickles every task (and result) it stores and unpickles what it dequeues, so
whoever can write to the SQLite file, the Redis or the database runs code in the worker. The
`json-serializer` variant gives `Huey(serializer=...)` a `Serializer` subclass that writes JSON
instead (`JSONSerializer` below: bytes as base64 text, +33%): nothing from the broker is
unpickled, and a task runs only if its name is registered on the worker. Delivery is the same as
`default` (at-most-once).

Options (the `default` variant): the `huey_consumer` worker settings `workers`, `worker_type`
and the empty-queue polling `initial_delay`, `backoff` and `max_delay` (SQLite is polled; Redis
blocks in BRPOP), passed on its command line; everything else is huey's default, recorded too.
The polling matters for latency: an idle worker waits 0.1 s, then 15% longer each empty poll, up
to 10 s (measured: a message sent after 5 s idle waited 0.6 s, after 15 s idle 0.9 s).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import signal
import sqlite3
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from huey import Huey, PostgresHuey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper
from huey.registry import Message
from huey.serializer import Serializer
from huey.utils import Error

from queuebench.adapters.base import (
    Adapter,
    Backlog,
    Capabilities,
    SizeLimit,
    Variant,
    base64_size,
)
from queuebench.adapters.sqlite_probe import check_sqlite_file
from queuebench.errors import BrokerUnreachable, UsageError
from queuebench.redact import redact
from queuebench.worker.handler import handle

TASK_NAME = "queuebench_message"
# huey pickles a Message tuple (task id, task name, args, ...) around the payload: measured
# 151 bytes under 256 B of payload, 163 from 64 KiB to 4 GiB (pickle's length fields grow).
PICKLE_FRAMING_BYTES = 163
# The json-serializer variant's JSON task around the base64 text: the Message's 15 fields, the
# task id (a 36-character uuid) and name; measured 189 bytes whatever the payload, rounded up.
JSON_FRAMING_BYTES = 256

WORKER_SETTINGS = {  # huey_consumer option -> value; these are huey 3.5's defaults
    "workers": ("-w", 1),
    "worker_type": ("-k", "thread"),
    "initial_delay": ("-d", 0.1),
    "backoff": ("-b", 1.15),
    "max_delay": ("-m", 10.0),
}
LIBRARY_DEFAULTS = {
    "ack": "none (dequeue deletes the task)",
    "graceful_stop": "SIGINT, waits for the task in hand (shutdown_timeout: none)",
    "immediate_stop": "SIGTERM",
    "retries": 0,
    "serializer": "pickle",
    "scheduler": "a thread, every 1 s, periodic tasks on",
}
PICKLE_SERIALIZER = ("pickle (huey's default Serializer): whoever can write to the broker runs "
                     "code in the worker; json-serializer: JSON, nothing is unpickled and a task "
                     "runs only if its name is registered on the worker")


def json_wire_bytes(payload_bytes: int) -> int:
    return base64_size(payload_bytes) + JSON_FRAMING_BYTES


def _tagged(value: object) -> object:
    """`value` in terms JSON has: what it lacks goes as a one-key object naming its type."""
    if isinstance(value, Message):  # namedtuples: before tuple
        return {"__huey_message__": [_tagged(field) for field in value]}
    if isinstance(value, Error):
        return {"__huey_error__": _tagged(value.metadata)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime):
        return {"__datetime__": value.isoformat()}
    if isinstance(value, tuple):
        return {"__tuple__": [_tagged(item) for item in value]}
    if isinstance(value, list):
        return [_tagged(item) for item in value]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _tagged(item) for key, item in value.items()}
    if value is None or isinstance(value, str | int | float):
        return value
    raise TypeError(f"huey's JSON serializer cannot carry a {type(value).__name__}")


_UNTAG: dict[str, Callable[[object], object]] = {
    "__huey_message__": lambda fields: Message(*fields),
    "__huey_error__": Error,
    "__bytes__": lambda text: base64.b64decode(text, validate=True),
    "__datetime__": datetime.fromisoformat,
    "__tuple__": tuple,
}


def _untagged(obj: dict[str, object]) -> object:
    if len(obj) == 1:
        [(key, value)] = obj.items()
        if key in _UNTAG:
            return _UNTAG[key](value)
    return obj


class JSONSerializer(Serializer):
    """huey's Serializer with JSON in place of pickle, for `Huey(serializer=JSONSerializer())`.

    huey stores Message namedtuples (task name, id, args, eta, ...), results and errors; JSON has
    no bytes, tuples or datetimes, so those travel tagged (`{"__bytes__": "<base64>"}`), and a
    value of any other type is refused when it is enqueued, never pickled.
    """

    def _serialize(self, data: object) -> bytes:
        return json.dumps(_tagged(data), separators=(",", ":")).encode()

    def _deserialize(self, data: bytes) -> object:
        return json.loads(data, object_hook=_untagged)


SERIALIZERS: dict[str, Callable[[], Serializer] | None] = {
    "pickle": None,  # huey's own default
    "json": JSONSerializer,
}


def deliver(message: bytes) -> None:
    """The huey task: hand the message to the shared handler; returning None stores no result."""
    handle(message)


def sqlite_path(pair_url: str) -> Path:
    address = pair_url.partition("://")[2]
    if not address.startswith("/") or len(address) < 2:
        raise UsageError(f"{redact(pair_url)!r}: expected huey+sqlite:///path/to/file.sqlite "
                         "(a file: the worker is another process)")
    return Path(address[1:]).resolve()


def huey_variants(**broker_settings: object) -> tuple[Variant, Variant]:
    """huey's defaults, and the same with the JSON serializer: delivery is the same in both."""
    default = {**{k: v for k, (_, v) in WORKER_SETTINGS.items()}, **LIBRARY_DEFAULTS,
               **broker_settings}
    return (
        Variant("default", default),
        Variant("json-serializer", {**default, "serializer": "json"},
                note="huey's defaults with JSONSerializer in place of pickle: nothing from the "
                     "broker is unpickled; the payload goes as base64 text (+33%)"),
    )


REDIS_MAX_CLIENTS = 10_000  # Redis's own default maxclients


def huey_for(pair_url: str, queue: str, serializer: str = "pickle") -> tuple[Huey, TaskWrapper]:
    """The huey instance for a pair URL and serializer (a key of SERIALIZERS), with the message
    task registered.

    Producer and worker both build theirs here, so the task has the same registered name
    (`queuebench.adapters.huey.queuebench_message`) and serializer on both sides.
    """
    backend, _, address = pair_url.partition("+")[2].partition("://")
    make_serializer = SERIALIZERS[serializer]
    options = {} if make_serializer is None else {"serializer": make_serializer()}
    if backend == "sqlite":
        path = sqlite_path(pair_url)
        path.parent.mkdir(parents=True, exist_ok=True)
        huey: Huey = SqliteHuey(queue, filename=str(path), **options)
    elif backend == "redis":
        # Each worker thread holds a connection (BRPOP); redis-py 8 caps a pool at 100, which
        # 300 threads overran (MaxConnectionsError, tasks lost): as many as Redis accepts.
        huey = RedisHuey(queue, url=f"redis://{address}?max_connections={REDIS_MAX_CLIENTS}",
                         **options)
    elif backend == "postgres":
        huey = PostgresHuey(queue, dsn=f"postgresql://{address}", connect_timeout=10, **options)
    else:
        raise UsageError(f"{redact(pair_url)!r}: huey pairs are huey+sqlite, huey+redis, "
                         "huey+postgres")
    return huey, huey.task(name=TASK_NAME)(deliver)


def close_storage(huey: Huey) -> None:
    huey.storage.close()
    pool = getattr(huey.storage, "pool", None)  # RedisStorage.close() leaves its pool open
    if pool is not None:
        pool.disconnect()


class HueyProducer:
    def __init__(self, huey: Huey, task: TaskWrapper) -> None:
        self.huey = huey
        self.task = task

    def send(self, payload: bytes, *, key: str | None = None) -> None:
        self.task(payload)  # enqueues; raises what the storage raises

    def flush(self) -> None:
        """Every enqueue is stored when it returns (SQLite commit, Redis LPUSH)."""

    def close(self) -> None:
        close_storage(self.huey)


class HueyAdapter(Adapter):
    scheme = "huey+sqlite"
    library = "huey"
    broker = "sqlite"
    capabilities = Capabilities(
        ack="none: dequeue deletes the task before it runs",
        on_worker_killed="the running task is lost (already deleted); SIGTERM drops it too, "
                         "SIGINT lets it finish",
        redelivery_after="never",
        ordering="FIFO (priority, then insertion id) with one worker",
        carries_bytes="raw bytes as the task argument, pickled (151-163 bytes of framing); "
                      "json-serializer: base64 text (+33%) in a JSON task (189 bytes of "
                      "framing)",
        serializer=PICKLE_SERIALIZER,
        durability="each enqueue is an INSERT committed at once; SqliteHuey sets WAL and leaves "
                   "synchronous at SQLite's default (FULL in this build): on disk when it returns",
    )
    size_limit = SizeLimit(
        max_bytes=1_000_000_000,  # compared with wire bytes: the pickled task
        error="sqlite3.DataError: string or blob too big (SQLITE_MAX_LENGTH, 1,000,000,000 "
              "bytes for the pickled task)",
        overhead=lambda n: n + PICKLE_FRAMING_BYTES,
    )
    variants = huey_variants(sqlite_journal_mode="wal", sqlite_busy_timeout_sec=5)
    # Threads, huey's default worker type: the stops described above hold for any number, and
    # the handler's work (a sleep) releases the GIL.
    concurrency_unit = "worker threads of one consumer (huey_consumer -w N -k thread)"
    graceful_stop_signal = signal.SIGINT  # huey_consumer's default graceful signal
    on_failure = ("not retried (retries=0): the task is logged and dropped; its error is stored "
                  "as the task's result")

    def __init__(self, url: str, *, queue: str, variant: str = "default") -> None:
        super().__init__(url, queue=queue, variant=variant)
        if self.broker == "sqlite":  # the worker must find the same file from any directory
            self.url = f"{self.scheme}:///{sqlite_path(url)}"
        if self.serializer != "pickle":  # base64 in JSON: the pair's limit, other framing
            self.size_limit = dataclasses.replace(type(self).size_limit,
                                                  overhead=json_wire_bytes)
        self._huey: Huey | None = None

    @property
    def serializer(self) -> str:
        return str(self.settings["serializer"])

    def build_huey(self) -> tuple[Huey, TaskWrapper]:
        """This pair's huey instance and task; `huey_worker` builds the worker's here too."""
        return huey_for(self.url, self.queue, self.serializer)

    @property
    def huey(self) -> Huey:
        if self._huey is None:
            self._huey, _ = self.build_huey()
        return self._huey

    def check_reachable(self, timeout: float) -> None:
        # Asks the file system only: opening the database would create it.
        check_sqlite_file(self.scheme, sqlite_path(self.url))

    def broker_version(self) -> str | None:
        return f"SQLite {sqlite3.sqlite_version}"

    def prepare(self) -> None:
        self.huey.flush()  # this queue's tasks, schedule, results and counters

    def producer(self) -> HueyProducer:
        return HueyProducer(*self.build_huey())

    def consumer_argv(self, concurrency: int = 1) -> list[str]:
        """`huey_consumer` with `concurrency` thread workers (the variant's own `workers`, 1, is
        what concurrency 1 gives)."""
        argv = [sys.executable, "-m", "huey.bin.huey_consumer",
                "queuebench.adapters.huey_worker.huey"]
        for name, (flag, _) in WORKER_SETTINGS.items():
            value = concurrency if name == "workers" and concurrency != 1 else self.settings[name]
            argv += [flag, str(value)]
        return argv

    def backlog(self) -> Backlog:
        queued, scheduled = self.huey.pending_count(), self.huey.scheduled_count()
        return Backlog(waiting=queued + scheduled,
                       detail=f"{queued} tasks queued, {scheduled} scheduled; a task a worker "
                              "took is already deleted, so none can be stranded")

    def failure_outcome(self) -> dict[str, int]:
        """Error results stored: the handler returns None, which huey does not store, so every
        result in the store is a failed task's error."""
        return {"error_results": self.huey.result_count()}

    def cleanup(self) -> None:
        if self._huey is not None:
            close_storage(self._huey)
            self._huey = None


class HueyRedisAdapter(HueyAdapter):
    scheme = "huey+redis"
    broker = "redis"
    capabilities = Capabilities(
        ack=HueyAdapter.capabilities.ack,
        on_worker_killed=HueyAdapter.capabilities.on_worker_killed,
        redelivery_after="never",
        ordering="FIFO (LPUSH, BRPOP) with one worker",
        carries_bytes=HueyAdapter.capabilities.carries_bytes,
        serializer=PICKLE_SERIALIZER,
        durability="nothing: enqueue is one LPUSH, huey sets no persistence option; the broker's "
                   "own persistence (save, appendonly) decides",
    )
    size_limit = SizeLimit(
        max_bytes=512 * 1024 * 1024,
        error="Redis proto-max-bulk-len (512 MB): the server closes the connection; redis-py: "
              "ConnectionError ... Broken pipe",
        overhead=lambda n: n + PICKLE_FRAMING_BYTES,
    )
    variants = huey_variants(redis_blocking_read_timeout_sec=1)

    @property
    def redis_url(self) -> str:
        return f"redis://{self.url.partition('://')[2]}"

    def check_reachable(self, timeout: float) -> None:
        from queuebench.adapters.redis_probe import check_redis

        check_redis(self.scheme, self.redis_url, timeout)

    def broker_version(self) -> str | None:
        from queuebench.adapters.redis_probe import redis_version

        return redis_version(self.redis_url)


class HueyPostgresAdapter(HueyAdapter):
    scheme = "huey+postgres"
    broker = "postgres"
    capabilities = Capabilities(
        ack="none: dequeue is a DELETE ... RETURNING before the task runs",
        on_worker_killed=HueyAdapter.capabilities.on_worker_killed,
        redelivery_after="never",
        ordering="FIFO (priority, then id) with one worker",
        carries_bytes="raw bytes as the task argument, pickled into a BYTEA column; "
                      "json-serializer: base64 text (+33%) in a JSON task, in the same column",
        serializer=PICKLE_SERIALIZER,
        durability="each enqueue is an INSERT on an autocommit connection: on disk when it "
                   "returns while PostgreSQL's synchronous_commit is on (its default)",
    )
    size_limit = SizeLimit(
        max_bytes=1_073_741_823,
        error="PostgreSQL: invalid memory alloc request size (1 GB per BYTEA field)",
        overhead=lambda n: n + PICKLE_FRAMING_BYTES,
    )
    variants = huey_variants(postgres_listen_read_timeout_sec=1)

    def _connect(self, timeout: float):
        import psycopg

        return psycopg.connect(f"postgresql://{self.url.partition('://')[2]}",
                               connect_timeout=max(1, int(timeout)))

    def check_reachable(self, timeout: float) -> None:
        import psycopg

        try:
            self._connect(timeout).close()
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0]
            raise BrokerUnreachable(
                redact(f"{self.scheme}: cannot reach {self.url}: {reason}")) from None

    def broker_version(self) -> str | None:
        with self._connect(5.0) as conn:
            return conn.execute("select version()").fetchone()[0].split(" on ")[0]
