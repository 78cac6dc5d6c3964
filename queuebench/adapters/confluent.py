"""confluent-kafka (librdkafka) on Kafka: `Producer` sends, a `Consumer` in a group receives.

Features: `default` keeps librdkafka's auto-commit, which is NOT the same as kafka-python's.
librdkafka stores a message's offset + 1 at the moment `poll()` hands the message to the
application (`enable.auto.offset.store`, src/rdkafka_op.c `rd_kafka_fetch_op_app_prepare`), and
its own background thread commits the stored offsets every 5 s (src/rdkafka_cgrp.c
`rd_kafka_cgrp_offset_commit_tmr_cb`). A commit that fires while a message is being handled
covers that message: if the worker is then killed before the work ends, the message is lost.
Otherwise a kill repeats what was handled since the last commit (duplicates), as kafka-python
does. So with a worker killed at a random moment, loss is rare (the chance that the last commit
fell inside the message in hand: about work time / 5 s per kill) but real; tests/test_kafka.py
shows it with a task longer than the commit interval. `commit-after` turns auto-commit off and
commits each message synchronously after the handler returns: a kill repeats at most the message
whose commit was in flight, and loses none. (librdkafka's documented alternative,
`enable.auto.offset.store=false` plus `store_offsets()` after the work, is not a variant here.)

Graceful stop (SIGTERM): the loop finishes the message in hand, then `close()` commits the stored
offsets (auto-commit) and leaves the group, so the next member starts at once.

Producer: librdkafka defaults, which differ from kafka-python's: acks=all (-1, as kafka-python
3), but idempotence off, linger.ms 5 and message.max.bytes 1,000,000 (not 1,048,576). A message
over it is refused by `produce()` itself, before sending: `KafkaException: KafkaError{code=
MSG_SIZE_TOO_LARGE,val=10,str="Unable to produce message: Broker: Message size too large"}`.
librdkafka counts payload + key + 36 bytes (measured). Delivery failures arrive in the delivery
callback; `flush()` raises the first.

Connection URL: `confluent-kafka+kafka://127.0.0.1:9092` (comma-separated bootstrap servers).

Options (the variants): the librdkafka consumer properties below, passed as given; the group is
the queue name; `group.protocol` classic (see kafka_common).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from queuebench.adapters.base import DROPPED_BY_THE_LOOP, Capabilities, Done, SizeLimit
from queuebench.adapters.kafka_common import (
    AUTO_COMMIT_INTERVAL_MS,
    BROKER_MESSAGE_MAX_BYTES,
    HEARTBEAT_INTERVAL_MS,
    KEY_ALLOWANCE_BYTES,
    MAX_POLL_INTERVAL_MS,
    POLL_TIMEOUT_SEC,
    SESSION_TIMEOUT_MS,
    KafkaPairBase,
    group_members,
    kafka_variants,
)

MESSAGE_MAX_BYTES = 1_000_000  # librdkafka's default client-side limit
MESSAGE_FRAMING_BYTES = 36  # measured: the largest value that fits is 1,000,000 - 36 - key
FLUSH_TIMEOUT_SEC = 300.0  # librdkafka's message.timeout.ms: no delivery outlives it
QUEUE_FULL_WAIT_SEC = 0.1
POLLER_TIMEOUT_SEC = 0.05  # how soon the poller thread sees close()
CONNECT_TIMEOUT_SEC = 30.0
# librdkafka writes its log to stderr unless handed a logger: the run keeps it in clients.log.
LIBRDKAFKA = logging.getLogger("librdkafka")
CONSUMER_KEYS = ("enable.auto.commit", "auto.commit.interval.ms", "enable.auto.offset.store",
                 "auto.offset.reset", "session.timeout.ms", "heartbeat.interval.ms",
                 "max.poll.interval.ms", "group.protocol")
PRODUCER_DEFAULTS = {"producer acks": "all (-1)", "producer enable.idempotence": False,
                     "producer linger.ms": 5, "producer message.max.bytes": MESSAGE_MAX_BYTES}


def consumer_settings(*, auto_commit: bool) -> dict[str, object]:
    return {
        "enable.auto.commit": auto_commit,
        "auto.commit.interval.ms": AUTO_COMMIT_INTERVAL_MS,
        "enable.auto.offset.store": True,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
        "group.protocol": "classic",
        "commit_after_each_message": not auto_commit,
        "poll_timeout_sec": POLL_TIMEOUT_SEC,
        **PRODUCER_DEFAULTS,
    }


class ConfluentProducer:
    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._producer = Producer({"bootstrap.servers": bootstrap, "logger": LIBRDKAFKA})
        # Connected means the topic's leader is known: the first send would wait for it.
        self._producer.list_topics(topic, timeout=CONNECT_TIMEOUT_SEC)
        self._failures: list[KafkaError] = []
        self._poller: threading.Thread | None = None
        self._closing = threading.Event()

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(error)

    def send_async(self, payload: bytes, *, key: str | None = None, on_done: Done) -> None:
        """produce() with a delivery callback that tells `on_done`: once the broker acknowledged
        the message (acks=all), or its KafkaError. librdkafka calls back only inside poll() or
        flush(), so a thread polls while async sends are in flight."""

        def delivered(error: KafkaError | None, _message: Message) -> None:
            on_done(None if error is None else KafkaException(error))

        if self._poller is None:
            self._poller = threading.Thread(target=self._poll, name="confluent-poller",
                                            daemon=True)
            self._poller.start()
        while True:
            try:
                self._producer.produce(self.topic, value=payload, key=key, on_delivery=delivered)
                # Serve the callbacks due here as well: the poller then seldom wakes, and each
                # wake-up costs a GIL hand-over (200,000 sends: 86k msg/s, against 73k without).
                self._producer.poll(0)
                return
            except BufferError:  # the local queue is full: wait for deliveries to drain it
                self._producer.poll(QUEUE_FULL_WAIT_SEC)
            except Exception as exc:  # refused before sending, e.g. MSG_SIZE_TOO_LARGE
                on_done(exc)
                return

    def _poll(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(POLLER_TIMEOUT_SEC)

    def send(self, payload: bytes, *, key: str | None = None) -> None:
        self._raise_failure()
        while True:
            try:
                self._producer.produce(self.topic, value=payload, key=key,
                                       on_delivery=self._delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(QUEUE_FULL_WAIT_SEC)
                self._raise_failure()
        self._producer.poll(0)  # serve delivery callbacks

    def flush(self) -> None:
        undelivered = self._producer.flush(FLUSH_TIMEOUT_SEC)
        self._raise_failure()
        if undelivered:
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT,
                                            f"{undelivered} messages still undelivered"))

    def close(self) -> None:
        self._closing.set()
        if self._poller is not None:
            self._poller.join()
        self._producer.close()

    def _raise_failure(self) -> None:
        if self._failures:
            raise KafkaException(self._failures[0])


class ConfluentKafkaAdapter(KafkaPairBase):
    scheme = "confluent-kafka+kafka"
    library = "confluent-kafka"
    capabilities = Capabilities(
        ack="default: offsets stored as poll() returns each message, committed every 5 s by a "
            "background thread; commit-after: a synchronous commit after each message",
        on_worker_killed="default: messages handled since the last commit come again, and the "
                         "message in hand is lost if a commit fired during its work; "
                         "commit-after: no loss, at most one duplicate",
        redelivery_after="the killed member's session timeout (10 s here), then the next member "
                         "reads on from the committed offset",
        ordering="offset order (one partition)",
        carries_bytes="raw bytes as the message value; key = str(seq)",
        serializer="none: raw bytes reach the handler, nothing is unpickled or decoded",
        durability="producer acks=all (-1), idempotence off, retries within message.timeout.ms "
                   "300 s (librdkafka 2.16 defaults, both variants); the topic has one replica, "
                   "so all means the leader alone",
    )
    size_limit = SizeLimit(
        max_bytes=MESSAGE_MAX_BYTES,
        error='KafkaException: KafkaError{code=MSG_SIZE_TOO_LARGE,val=10,str="Unable to produce '
              'message: Broker: Message size too large"} (raised by produce(), nothing sent; '
              f"librdkafka message.max.bytes {MESSAGE_MAX_BYTES:,}, broker "
              f"{BROKER_MESSAGE_MAX_BYTES:,})",
        overhead=lambda n: n + MESSAGE_FRAMING_BYTES + KEY_ALLOWANCE_BYTES,
    )
    variants = kafka_variants(
        consumer_settings,
        "librdkafka's defaults: offsets stored on poll(), auto-committed every 5 s")
    on_failure = f"{DROPPED_BY_THE_LOOP}; its offset, stored at poll(), is committed"
    concurrency_unit = group_members("Consumer")

    def producer(self) -> ConfluentProducer:
        return ConfluentProducer(self.bootstrap, self.queue)

    def consume(self, handle: Callable[[bytes], None], stopping: threading.Event) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group_id,
                             **{key: self.settings[key] for key in CONSUMER_KEYS}})
        commit_each = bool(self.settings["commit_after_each_message"])
        poll_sec = float(self.settings["poll_timeout_sec"])
        consumer.subscribe([self.queue])
        try:
            while not stopping.is_set():
                message = consumer.poll(poll_sec)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    # librdkafka retries the others by itself; they belong in the log.
                    print(f"consumer: {error}", file=sys.stderr, flush=True)
                    continue
                handle(message.value())
                if commit_each:
                    consumer.commit(message=message, asynchronous=False)
        finally:
            # With auto-commit this commits the stored offsets, the message in hand included even
            # when its handler raised: librdkafka stored it as poll() returned it. Leaves the group.
            consumer.close()
