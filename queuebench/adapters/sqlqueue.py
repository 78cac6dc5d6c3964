"""A queue table through SQLAlchemy 2: claim a row, process it, delete it.

Features: at-least-once. A consumer claims the oldest visible row by pushing its `visible_at` one
lease into the future, processes it, then deletes it; a consumer that dies mid-work leaves the row
in the table, and it becomes visible again when the lease runs out. On PostgreSQL the claim skips
rows locked by other consumers (`FOR UPDATE SKIP LOCKED`); SQLite has a single writer and
SQLAlchemy drops the clause there, so the same statement serves both.

SQLite takes its one write lock for an UPDATE even when no row matches, and a writer that finds it
taken sleeps in SQLite's busy handler (up to 100 ms at a time) before it tries again. So on SQLite
a loop whose last claim found nothing only reads until a row is visible (a reader never blocks the
writer in WAL; a busy loop claims at once, as the read cost one loop a quarter of its rate), and the
loops of one process write in turn, behind a lock of the process, as SQLite queue libraries do
(persist-queue holds its `tran_lock` around each write). Without them, 100 idle loops polling every
20 ms held the producer of another process to 54 msg/s (2,174 beside one loop), and 900 busy ones
waited out the 30 s busy timeout ("database is locked").

Connection URL: `sqlalchemy+sqlite:///path/queue.sqlite`, `sqlalchemy+postgres://user:pw@host/db`.

Options (the `default` variant): `lease_sec` (visibility timeout), `poll_interval_sec`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError

from queuebench.adapters.base import (
    DROPPED_BY_THE_LOOP,
    Adapter,
    Backlog,
    Capabilities,
    SizeLimit,
    Variant,
)
from queuebench.adapters.sqlite_probe import check_sqlite_file
from queuebench.errors import BrokerUnreachable
from queuebench.redact import redact

DEFAULT_LEASE_SEC = 10.0
DEFAULT_POLL_INTERVAL_SEC = 0.02

metadata = MetaData()
messages = Table(
    "queuebench_messages", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("queue", String(200), nullable=False, index=True),
    Column("body", LargeBinary, nullable=False),
    Column("visible_at", Float, nullable=False),  # epoch seconds; in the future while leased
    Column("attempts", Integer, nullable=False, default=0),
)


def engine_url(pair_url: str) -> str:
    """`sqlalchemy+sqlite:///rel.db` -> an absolute SQLite URL; postgres goes through psycopg 3."""
    _, _, rest = pair_url.partition("+")
    backend, _, address = rest.partition("://")
    if backend == "sqlite":
        if address.startswith("/") and len(address) > 1:
            return f"sqlite:///{Path(address[1:]).resolve()}"
        return "sqlite://"  # in-memory: only for unit tests, consumers cannot share it
    return f"postgresql+psycopg://{address}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the consumer read while the producer writes; NORMAL sync is WAL's documented pair.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


_sqlite_write_turns: dict[str, threading.Lock] = {}
_sqlite_write_turns_guard = threading.Lock()


def write_turn(engine: Engine) -> contextlib.AbstractContextManager:
    """The lock this process's writers to one SQLite file take in turn; none on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    with _sqlite_write_turns_guard:
        return _sqlite_write_turns.setdefault(str(engine.url), threading.Lock())


def open_engine(pair_url: str, *, timeout: float = 30.0) -> Engine:
    url = engine_url(pair_url)
    if url.startswith("sqlite"):
        if url != "sqlite://":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": timeout})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A server restart leaves every pooled connection dead: pre-ping swaps one for a new one
    # before use, as an application that outlives its database would be configured.
    return create_engine(url, pool_pre_ping=True,
                         connect_args={"connect_timeout": max(1, int(timeout))})


class SqlQueueProducer:
    def __init__(self, engine: Engine, queue: str) -> None:
        self.engine = engine
        self.queue = queue

    def send(self, payload: bytes, *, key: str | None = None) -> None:
        # One transaction per message, as a web request handing off its work would do.
        with write_turn(self.engine), self.engine.begin() as conn:
            conn.execute(insert(messages).values(queue=self.queue, body=payload,
                                                 visible_at=time.time(), attempts=0))

    def flush(self) -> None:
        """Every send has committed already."""

    def close(self) -> None:
        self.engine.dispose()


class SqlQueueAdapter(Adapter):
    scheme = "sqlalchemy+sqlite"
    library = "SQLAlchemy"
    broker = "sqlite"
    capabilities = Capabilities(
        ack="row deleted after the handler returns",
        on_worker_killed="the claimed row stays; it is delivered again when its lease ends",
        redelivery_after="the lease (visibility timeout)",
        ordering="FIFO by id, except redeliveries",
        carries_bytes="raw bytes in a BLOB / BYTEA column",
        serializer="none: raw bytes reach the handler, nothing is unpickled or decoded",
        durability="each send is an INSERT committed at once; queuebench sets WAL with "
                   "synchronous=NORMAL: a commit outlives a crash of any process, and a power "
                   "loss may undo the last ones",
    )
    size_limit = SizeLimit(
        max_bytes=1_000_000_000,
        error="sqlite3.DataError: string or blob too big (SQLITE_MAX_LENGTH); PostgreSQL: 1 GB "
              "per field",
    )
    variants = (
        Variant("default", {"lease_sec": DEFAULT_LEASE_SEC,
                            "poll_interval_sec": DEFAULT_POLL_INTERVAL_SEC},
                redelivery_sec=DEFAULT_LEASE_SEC),
    )
    on_failure = f"{DROPPED_BY_THE_LOOP}; its row is deleted"
    concurrency_unit = ("claiming threads of one `queuebench consume` process, each with an "
                        "engine of its own: claim a row, handle it, delete it")

    def __init__(self, url: str, *, queue: str, variant: str = "default") -> None:
        super().__init__(url, queue=queue, variant=variant)
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(self.url)
        return self._engine

    def check_reachable(self, timeout: float) -> None:
        url = engine_url(self.url)
        if url.startswith("sqlite"):
            # Asks the file system only: connecting would create the file, and the WAL pragma
            # every connection sets writes it. In-memory needs nothing.
            if url != "sqlite://":
                check_sqlite_file(self.scheme, Path(url.removeprefix("sqlite:///")))
            return
        engine = open_engine(self.url, timeout=timeout)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0]
            raise BrokerUnreachable(
                redact(f"{self.scheme}: cannot reach {engine.url!r}: {reason}")) from None
        finally:
            engine.dispose()

    def broker_version(self) -> str | None:
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "sqlite":
                return "SQLite " + conn.execute(text("select sqlite_version()")).scalar_one()
            return conn.execute(text("select version()")).scalar_one().split(" on ")[0]

    def prepare(self) -> None:
        metadata.create_all(self.engine)
        self.delete_queue()

    def delete_queue(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(messages).where(messages.c.queue == self.queue))

    def producer(self) -> SqlQueueProducer:
        return SqlQueueProducer(open_engine(self.url), self.queue)

    def consume(self, handle: Callable[[bytes], None], stopping: threading.Event) -> None:
        lease = float(self.settings["lease_sec"])
        poll = float(self.settings["poll_interval_sec"])
        idle = True  # until a claim finds a row
        while not stopping.is_set():
            claimed = self._claim(lease, idle=idle)
            idle = claimed is None
            if idle:
                stopping.wait(poll)
                continue
            row_id, body = claimed
            handle(body)
            with write_turn(self.engine), self.engine.begin() as conn:
                conn.execute(delete(messages).where(messages.c.id == row_id))

    def _claim(self, lease: float, *, idle: bool) -> tuple[int, bytes] | None:
        now = time.time()
        oldest_visible = (
            select(messages.c.id)
            .where(messages.c.queue == self.queue, messages.c.visible_at <= now)
            .order_by(messages.c.id).limit(1)
        )
        claim = (
            update(messages)
            .where(messages.c.id == oldest_visible.with_for_update(skip_locked=True)
                   .scalar_subquery())
            .values(visible_at=now + lease, attempts=messages.c.attempts + 1)
            .returning(messages.c.id, messages.c.body)
        )
        if idle and self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                if conn.execute(oldest_visible).first() is None:
                    return None  # read only: the writer goes on
        with write_turn(self.engine), self.engine.begin() as conn:
            row = conn.execute(claim).first()
        return None if row is None else (row.id, bytes(row.body))

    def backlog(self) -> Backlog:
        with self.engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(messages)
                                .where(messages.c.queue == self.queue)).scalar_one()
        return Backlog(waiting=rows, detail=f"{rows} rows left in the queue table")

    def cleanup(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class PostgresSqlQueueAdapter(SqlQueueAdapter):
    """The same queue on PostgreSQL, where the claim skips rows other consumers hold."""

    scheme = "sqlalchemy+postgres"
    broker = "postgres"
    capabilities = dataclasses.replace(
        SqlQueueAdapter.capabilities,
        durability="each send is an INSERT committed at once: on disk when the commit returns "
                   "while PostgreSQL's synchronous_commit is on (its default)")
    size_limit = SizeLimit(max_bytes=1_073_741_823,
                           error="PostgreSQL: invalid memory alloc request size (1 GB per field)")
