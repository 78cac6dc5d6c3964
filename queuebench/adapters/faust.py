"""faust-streaming over Kafka: `faust worker` runs one agent that hands each record to the handler.

Features: at-least-once. The agent iterates a stream over the topic (one partition, raw bytes);
the stream acks an event when the agent asks for the next one, i.e. after the handler returned
(`faust/streams.py` `Stream._py_aiter`), and the consumer commits acked offsets every
`broker_commit_interval` (2.8 s) or `broker_commit_every` (10,000) acks (`faust/transport/
consumer.py` `Consumer._commit_handler`). A SIGKILLed worker therefore loses nothing, and
repeats every message it finished since its last commit (observed: all of them when it dies
before its first commit, 2.8 s after start); the one in hand is simply read again.

A restarted worker gets the partition only when the group forgets the killed member, i.e. after
`broker_session_timeout`: faust's default is 60 s, set to 10 s here (measured: the first message
came 7.5-8.4 s after the restart; after a graceful stop, which sends LeaveGroup, 2.2 s).

Graceful stop: SIGTERM and SIGINT do the same (`mode/worker.py` `_on_sigterm`/`_on_sigint` both
schedule `Worker.stop`). `App._stop_consumer` pauses the partitions, drops the buffered records,
waits for the event in hand (`stream_wait_empty`, no time limit) and commits; mode then sleeps a
fixed 1 s before closing the loop. Measured: 1.3-1.5 s idle, plus the rest of the task in hand
when busy; nothing lost or repeated. Start-up: first message 1.8-2.4 s after `faust worker`
starts, of which 1 s is faust's fixed wait for tables to register (`Conductor`).

A handler that raises crashes the agent; faust's supervisor restarts it, and the crashed event
is acked when the garbage collector finalizes its stream (seconds later), then committed: failed
messages are not retried. The handler runs in a one-thread executor, off the event loop: run on
the loop, a 14 s task starves faust's commit timer (observed: nothing committed until the queue
was empty), though the group keeps the worker (aiokafka heartbeats from faust's consumer thread).

The `exactly-once` variant (`processing_guarantee="exactly_once"`) works against this single
broker (transaction log replication factor 1): offsets are committed inside a Kafka transaction
(`Consumer._commit_offsets` -> `TransactionManager.commit`) and the consumer reads
`read_committed`. Our handler's effect (the ledger receipt) is outside Kafka, so SIGKILL still
repeats what ran since the last commit: observed duplicates, no loss, same as `default`.

Sending: faust's own `Producer` (`faust/transport/drivers/aiokafka.py`, aiokafka's
AIOKafkaProducer underneath) built from the same app settings and driven from a private event
loop thread, because faust sends only from a coroutine. So a payload meets what faust's sending
path enforces: `producer_max_request_size` 1,000,000 bytes (below Kafka's 1,048,588), checked
by aiokafka on its size estimate of the record. A send returns once aiokafka has queued the
record; the broker's acknowledgement resolves the future aiokafka gave back, which
`send_async` passes on, so faust keeps sends in flight as the plain Kafka clients do.

Connection URL: `faust+kafka://HOST:PORT` (faust's broker `kafka://HOST:PORT`). The app id, and so
the consumer group, is `queuebench-<queue>`; faust also creates `<app id>-__assignor-__leader`.
faust's datadir is `<ledger dir>/faust-data`, one per experiment.

Options: the variants record every faust setting that decides delivery; topic administration and
the backlog (end offset minus the group's committed offset) use kafka-python's admin client.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faust
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.transport.producer import Producer as FaustTransportProducer
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import KafkaError

from queuebench.adapters.base import Adapter, Backlog, Capabilities, Done, SizeLimit, Variant
from queuebench.adapters.kafka_common import drop_topic, recreate_topic
from queuebench.errors import BrokerUnreachable, UsageError
from queuebench.redact import redact
from queuebench.worker.handler import ConsumerConfig, handle

ADMIN_TIMEOUT_SEC = 30.0
SEND_TIMEOUT_SEC = 60.0
SIZE_CHECK_KEY = b"99999"  # the runner's keys are str(seq); the key counts in the size estimate
MAX_REQUEST_BYTES = 1_000_000  # faust's producer_max_request_size

# faust.App settings, as faust names them: its 0.15 defaults except the session timeout.
FAUST_SETTINGS: dict[str, object] = {
    "processing_guarantee": "at_least_once",
    "broker_commit_interval": 2.8,  # seconds between commits of acked offsets
    "broker_commit_every": 10_000,  # ... or after this many acks
    "broker_session_timeout": 10.0,  # faust's default 60.0: a killed worker would block 60 s
    "broker_heartbeat_interval": 3.0,
    "broker_rebalance_timeout": 60.0,
    "broker_max_poll_interval": 1000.0,
    "consumer_auto_offset_reset": "earliest",
    "stream_wait_empty": True,  # a graceful stop waits for the event in hand, then commits
    "stream_buffer_maxsize": 4096,
    "producer_acks": -1,
    "producer_max_request_size": MAX_REQUEST_BYTES,
}
# How our agent is written: not faust settings, but they decide delivery too.
AGENT_SHAPE = {"agent_concurrency": 1, "topic_partitions": 1,
               "handler_runs_in": "a one-thread executor, off the event loop"}


def record_wire_bytes(payload_bytes: int) -> int:
    """aiokafka's size estimate for one record, which it compares with max_request_size."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(SIZE_CHECK_KEY, bytes(payload_bytes),
                                                            [])


def kafka_address(pair_url: str) -> str:
    address = pair_url.partition("://")[2].rstrip("/")
    if not address or "/" in address or "@" in address:  # "@": no credentials in a Kafka URL
        raise UsageError(f"{redact(pair_url)!r}: expected faust+kafka://HOST:PORT")
    return address


def app_id(queue: str) -> str:
    return f"queuebench-{queue}"


def build_app(pair_url: str, queue: str, settings: Mapping[str, object], *,
              datadir: Path | None = None) -> faust.App:
    options = {name: value for name, value in settings.items() if name in FAUST_SETTINGS}
    if datadir is not None:
        options["datadir"] = str(datadir)
    return faust.App(app_id(queue), broker=f"kafka://{kafka_address(pair_url)}", **options)


def worker_app(config: ConsumerConfig) -> faust.App:
    """The app `faust worker` runs: one agent handing each record's value to the handler.

    `config.concurrency` is the agent's `concurrency`: that many actors share the agent's
    stream (one partition is enough), each handing its record to a thread of the executor.
    """
    adapter = FaustAdapter(config.pair_url, queue=config.queue, variant=config.variant)
    datadir = Path(config.ledger_dir) / "faust-data"
    datadir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level
    app = build_app(adapter.url, adapter.queue, adapter.settings, datadir=datadir)
    topic = app.topic(adapter.queue, key_serializer="raw", value_serializer="raw")
    executor = ThreadPoolExecutor(max_workers=config.concurrency,
                                  thread_name_prefix="queuebench-handler")

    @app.agent(topic, name="queuebench-deliver", concurrency=config.concurrency)
    async def deliver(payloads):
        loop = asyncio.get_running_loop()
        async for payload in payloads:
            await loop.run_in_executor(executor, handle, payload)

    return app


class FaustProducer:
    """faust's own Producer service, driven from an event loop in a thread of its own."""

    def __init__(self, make_app: Callable[[], faust.App], topic: str) -> None:
        self.topic = topic
        self._pending: collections.deque[asyncio.Future] = collections.deque()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faust-producer",
                                        daemon=True)
        self._thread.start()
        self._producer: FaustTransportProducer = self._run(self._start(make_app))

    @staticmethod
    async def _start(make_app: Callable[[], faust.App]) -> FaustTransportProducer:
        producer = make_app().producer  # made inside the loop that drives it
        await producer.start()
        return producer

    def _run(self, coro, timeout: float = SEND_TIMEOUT_SEC):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _enqueue(self, key: bytes | None, payload: bytes) -> asyncio.Future:
        """Hand the record to aiokafka's batch; the future it returns resolves on the broker's
        acknowledgement. Raises ProducerSendError at once for a record over max_request_size."""
        return await self._producer.send(self.topic, key, payload, None, None, None)

    async def _send(self, key: bytes | None, payload: bytes) -> None:
        self._pending.append(await self._enqueue(key, payload))
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()  # an earlier send's broker error surfaces here

    async def _send_told(self, key: bytes | None, payload: bytes, on_done: Done) -> None:
        try:
            acknowledged = await self._enqueue(key, payload)
        except Exception as exc:
            on_done(exc)
            return
        acknowledged.add_done_callback(lambda done: on_done(
            asyncio.CancelledError("send cancelled") if done.cancelled() else done.exception()))

    async def _flush(self) -> None:
        await self._producer.flush()
        while self._pending:
            await self._pending.popleft()

    def send(self, payload: bytes, *, key: str | None = None) -> None:
        self._run(self._send(None if key is None else key.encode(), payload))

    def send_async(self, payload: bytes, *, key: str | None = None, on_done: Done) -> None:
        """Returns once aiokafka queued the record; `on_done` is told, from the loop's thread,
        when the broker acknowledged it (producer acks=-1) or what failed."""
        self._run(self._send_told(None if key is None else key.encode(), payload, on_done))

    def flush(self) -> None:
        self._run(self._flush())

    def close(self) -> None:
        try:
            self._run(self._producer.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()


class FaustAdapter(Adapter):
    scheme = "faust+kafka"
    library = "faust-streaming"
    broker = "kafka"
    capabilities = Capabilities(
        ack="after the handler returns (the stream acks the event when the agent takes the "
            "next); acked offsets are committed every 2.8 s",
        on_worker_killed="nothing lost; messages finished since the last commit run again",
        redelivery_after="the killed member's session timeout (10 s here, faust default 60 s), "
                         "then from the last committed offset",
        ordering="partition order (one partition), one event at a time",
        carries_bytes="raw bytes as the record value (faust serializer 'raw')",
        serializer="none: faust's 'raw' codec hands the record's bytes to the agent, nothing is "
                   "unpickled",
        durability="producer acks=-1 (faust's producer_acks default), aiokafka idempotence off, "
                   "in both variants: exactly-once adds acks=all and idempotence only to the "
                   "worker's transactional producers, not to the sender here",
    )
    size_limit = SizeLimit(
        max_bytes=MAX_REQUEST_BYTES,  # compared with aiokafka's estimate of the record
        error="faust.exceptions.ProducerSendError: Error while sending: MessageSizeTooLargeError("
              "'The message is N bytes when serialized which is larger than the maximum request "
              "size you have configured with the max_request_size configuration')",
        overhead=record_wire_bytes,
    )
    variants = (
        Variant("default", {**FAUST_SETTINGS, **AGENT_SHAPE},
                note="faust's defaults (at-least-once), session timeout 10 s instead of 60 s",
                redelivery_sec=FAUST_SETTINGS["broker_session_timeout"]),
        Variant("exactly-once", {**FAUST_SETTINGS, **AGENT_SHAPE,
                                 "processing_guarantee": "exactly_once"},
                note="offsets committed in Kafka transactions; the handler's own effects are "
                     "outside them", redelivery_sec=FAUST_SETTINGS["broker_session_timeout"]),
    )
    concurrency_unit = ("agent actors sharing the stream of one faust worker, each handler in "
                        "an executor thread of its own (@app.agent(concurrency=N)); no command "
                        "line option: the worker module reads it from its configuration")
    graceful_stop_signal = signal.SIGTERM  # SIGINT is the same stop in mode's Worker
    on_failure = ("not retried: the agent crashes and faust's supervisor restarts it 5 s later "
                  "(observed), a stall per failing message; the failed event is acked and its "
                  "offset committed (dropped)")

    def __init__(self, url: str, *, queue: str, variant: str = "default") -> None:
        super().__init__(url, queue=queue, variant=variant)
        self.address = kafka_address(url)
        self.group = app_id(queue)  # faust's group id is its app id
        self._admin_client: KafkaAdminClient | None = None

    def _admin(self, timeout: float = ADMIN_TIMEOUT_SEC) -> KafkaAdminClient:
        if self._admin_client is None:
            self._admin_client = KafkaAdminClient(
                bootstrap_servers=self.address, client_id="queuebench-faust-admin",
                bootstrap_timeout_ms=int(timeout * 1000), request_timeout_ms=int(timeout * 1000))
        return self._admin_client

    def check_reachable(self, timeout: float) -> None:
        try:
            self._admin(timeout).list_topics()
        except KafkaError as exc:
            raise BrokerUnreachable(f"{self.scheme}: cannot reach Kafka at {self.address}: "
                                    f"{exc}") from None

    def broker_version(self) -> str | None:
        major, minor = self._admin()._manager.broker_version[:2]
        return f"Kafka {major}.{minor} (inferred by kafka-python from ApiVersions)"

    def prepare(self) -> None:
        recreate_topic(self._admin(), self.queue, self.group, ADMIN_TIMEOUT_SEC)

    def producer(self) -> FaustProducer:
        return FaustProducer(lambda: build_app(self.url, self.queue, self.settings), self.queue)

    def consumer_argv(self, concurrency: int = 1) -> list[str]:
        """`faust worker`; the agent's concurrency comes from the configuration (`worker_app`).

        No web server: several workers on one host would fight over port 6066."""
        return [sys.executable, "-m", "faust", "-A", "queuebench.adapters.faust_worker",
                "worker", "--loglevel", "info", "--without-web"]

    def offsets(self) -> tuple[int, int, int | None]:
        """The partition's first and end offsets, and the group's committed offset (or None)."""
        admin = self._admin()
        partition = TopicPartition(self.queue, 0)
        start = admin.list_partition_offsets({partition: OffsetSpec.EARLIEST})[partition].offset
        end = admin.list_partition_offsets({partition: OffsetSpec.LATEST})[partition].offset
        committed = admin.list_group_offsets({self.group: [partition]})[self.group].get(partition)
        return start, end, committed.offset if committed and committed.offset >= 0 else None

    def backlog(self) -> Backlog:
        start, end, committed = self.offsets()
        if committed is None:  # the worker starts at the first offset (auto_offset_reset)
            position, whence = start, f"no committed offset, starts at {start}"
        else:
            position, whence = committed, f"committed offset {committed}"
        return Backlog(waiting=end - position,
                       detail=f"topic end offset {end}, group {self.group}: {whence}; messages "
                              "handled since the last commit count as waiting")

    def delete_queue(self) -> None:
        drop_topic(self._admin(), self.queue, self.group, ADMIN_TIMEOUT_SEC)

    def cleanup(self) -> None:
        if self._admin_client is not None:
            self._admin_client.close()
            self._admin_client = None
