"""Huey tasks over SQLite (and Redis): the producer enqueues a task, `huey_consumer` runs it.

Features: at-most-once. Huey's `dequeue` removes the task from the broker before the worker runs
it (SQLite: select and delete in one transaction; Redis: BRPOP), and nothing acknowledges it
afterwards. So a worker killed mid-task loses that task, and no lease or heartbeat ever brings it
back. Stopping `huey_consumer` with SIGINT is graceful: workers finish the task in hand and take
no new one (no time limit unless `-t`). SIGTERM stops at once: with thread workers the process
exits and the task in hand is dropped with it. Huey 3.5 can swap the two with `-g TERM`.

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

Options (the `default` variant): the `huey_consumer` worker settings `workers`, `worker_type`
and the empty-queue polling `initial_delay`, `backoff` and `max_delay` (SQLite is polled; Redis
blocks in BRPOP), passed on its command line; everything else is huey's default, recorded too.
The polling matters for latency: an idle worker waits 0.1 s, then 15% longer each empty poll, up
to 10 s (measured: a message sent after 5 s idle waited 0.6 s, after 15 s idle 0.9 s).
"""

from __future__ import annotations

import signal
import sqlite3
import sys
from pathlib import Path

from huey import Huey, PostgresHuey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper

from queuebench.adapters.base import Adapter, Backlog, Capabilities, SizeLimit, Variant
from queuebench.errors import BrokerUnreachable, UsageError
from queuebench.experiments.handler import handle

TASK_NAME = "queuebench_message"
# huey pickles a Message tuple (task id, task name, args, ...) around the payload: measured
# 151 bytes under 256 B of payload, 163 from 64 KiB to 4 GiB (pickle's length fields grow).
PICKLE_FRAMING_BYTES = 163

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


def deliver(message: bytes) -> None:
    """The huey task: hand the message to the shared handler; returning None stores no result."""
    handle(message)


def sqlite_path(pair_url: str) -> Path:
    address = pair_url.partition("://")[2]
    if not address.startswith("/") or len(address) < 2:
        raise UsageError(f"{pair_url!r}: expected huey+sqlite:///path/to/file.sqlite "
                         "(a file: the worker is another process)")
    return Path(address[1:]).resolve()


def huey_for(pair_url: str, queue: str) -> tuple[Huey, TaskWrapper]:
    """The huey instance for a pair URL, with the message task registered.

    Producer and worker both build theirs here, so the task has the same registered name
    (`queuebench.adapters.huey.queuebench_message`) on both sides.
    """
    backend, _, address = pair_url.partition("+")[2].partition("://")
    if backend == "sqlite":
        path = sqlite_path(pair_url)
        path.parent.mkdir(parents=True, exist_ok=True)
        huey: Huey = SqliteHuey(queue, filename=str(path))
    elif backend == "redis":
        huey = RedisHuey(queue, url=f"redis://{address}")
    elif backend == "postgres":
        huey = PostgresHuey(queue, dsn=f"postgresql://{address}", connect_timeout=10)
    else:
        raise UsageError(f"{pair_url!r}: huey pairs are huey+sqlite, huey+redis, huey+postgres")
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
        carries_bytes="raw bytes as the task argument, pickled (151-163 bytes of framing)",
    )
    size_limit = SizeLimit(
        max_bytes=1_000_000_000,  # compared with wire bytes: the pickled task
        error="sqlite3.DataError: string or blob too big (SQLITE_MAX_LENGTH, 1,000,000,000 "
              "bytes for the pickled task)",
        overhead=lambda n: n + PICKLE_FRAMING_BYTES,
    )
    variants = (
        Variant("default", {**{k: v for k, (_, v) in WORKER_SETTINGS.items()},
                            **LIBRARY_DEFAULTS, "sqlite_journal_mode": "wal",
                            "sqlite_busy_timeout_sec": 5}),
    )
    graceful_stop_signal = signal.SIGINT  # huey_consumer's default graceful signal

    def __init__(self, url: str, *, queue: str, variant: str = "default") -> None:
        super().__init__(url, queue=queue, variant=variant)
        if self.broker == "sqlite":  # the worker must find the same file from any directory
            self.url = f"{self.scheme}:///{sqlite_path(url)}"
        self._huey: Huey | None = None

    @property
    def huey(self) -> Huey:
        if self._huey is None:
            self._huey, _ = huey_for(self.url, self.queue)
        return self._huey

    def check_reachable(self, timeout: float) -> None:
        path = sqlite_path(self.url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=timeout)
            try:
                conn.execute("select 1")
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as exc:
            raise BrokerUnreachable(f"{self.scheme}: cannot open {path}: {exc}") from None

    def broker_version(self) -> str | None:
        return f"SQLite {sqlite3.sqlite_version}"

    def prepare(self) -> None:
        self.huey.flush()  # this queue's tasks, schedule, results and counters

    def producer(self) -> HueyProducer:
        return HueyProducer(*huey_for(self.url, self.queue))

    def consumer_argv(self) -> list[str]:
        argv = [sys.executable, "-m", "huey.bin.huey_consumer",
                "queuebench.adapters.huey_worker.huey"]
        for name, (flag, _) in WORKER_SETTINGS.items():
            argv += [flag, str(self.settings[name])]
        return argv

    def backlog(self) -> Backlog:
        queued, scheduled = self.huey.pending_count(), self.huey.scheduled_count()
        return Backlog(waiting=queued + scheduled,
                       detail=f"{queued} tasks queued, {scheduled} scheduled; a task a worker "
                              "took is already deleted, so none can be stranded")

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
    )
    size_limit = SizeLimit(
        max_bytes=512 * 1024 * 1024,
        error="Redis proto-max-bulk-len (512 MB): the server closes the connection; redis-py: "
              "ConnectionError ... Broken pipe",
        overhead=lambda n: n + PICKLE_FRAMING_BYTES,
    )
    variants = (
        Variant("default", {**{k: v for k, (_, v) in WORKER_SETTINGS.items()},
                            **LIBRARY_DEFAULTS, "redis_blocking_read_timeout_sec": 1}),
    )

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
        carries_bytes="raw bytes as the task argument, pickled into a BYTEA column",
    )
    size_limit = SizeLimit(
        max_bytes=1_073_741_823,
        error="PostgreSQL: invalid memory alloc request size (1 GB per BYTEA field)",
        overhead=lambda n: n + PICKLE_FRAMING_BYTES,
    )
    variants = (
        Variant("default", {**{k: v for k, (_, v) in WORKER_SETTINGS.items()},
                            **LIBRARY_DEFAULTS, "postgres_listen_read_timeout_sec": 1}),
    )

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
            raise BrokerUnreachable(f"{self.scheme}: cannot reach {self.url}: {reason}") from None

    def broker_version(self) -> str | None:
        with self._connect(5.0) as conn:
            return conn.execute("select version()").fetchone()[0].split(" on ")[0]
