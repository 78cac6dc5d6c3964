"""kafka-python 3 on Kafka: `KafkaProducer` sends, a `KafkaConsumer` in a group receives.

Features: at-least-once in both variants; a killed consumer costs duplicates, never loss.
`default` keeps kafka-python's auto-commit (every 5 s). kafka-python commits from the consumer's
own thread only, inside `poll()` (kafka/coordinator/consumer.py `poll` ->
`_maybe_auto_commit_offsets_async`, which commits `all_consumed_offsets()`): at that moment every
record the previous `poll()` returned has been handled, so the record in hand is never committed
before its work ends. After SIGKILL the next member starts from the last commit: everything
handled since it comes again. As commits happen only between batches (`max_poll_records` 500),
that can be up to a whole batch, not only the last 5 s. `commit-after` turns auto-commit off and
commits each record's offset synchronously once it is handled: a kill repeats at most the record
whose commit was in flight.

Graceful stop (SIGTERM): the loop finishes the record in hand, then `close()` commits (auto-commit)
and leaves the group, so the next member starts at once. `poll()` moves the position past the
whole batch it returns, and `close()` commits that position: stopping mid-batch would skip the
batch's unhandled records. So the loop first seeks back to the first unhandled record.

Producer: kafka-python 3 defaults (acks=all, idempotence on, linger 0 ms, max_request_size
1048576). A record over max_request_size fails in `send()` itself, before anything is sent:
`MessageSizeTooLargeError: [Error 10] ... The message is N bytes when serialized ...`; N is the
record batch: payload + key + 87 bytes (measured). Other failures arrive on the send's future;
`flush()` raises the first.

Speed: unless the optional `crc32c` package is installed (`kafka-python[crc32c]`), kafka-python
computes the CRC-32C of every record batch it writes and checks (`check_crcs`) in pure Python
(kafka/record/util.py). Measured on 2,000 json messages of 17.5 KB: 133 msg/s without it,
290-435 msg/s with it.

Connection URL: `kafka-python+kafka://127.0.0.1:9092` (comma-separated bootstrap servers).

Options (the variants): the KafkaConsumer settings below, passed as given; the group is the
queue name. kafka-python 3.0 speaks only the classic group protocol.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from queuebench.adapters.base import DROPPED_BY_THE_LOOP, Capabilities, Done, SizeLimit, Variant
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

MAX_REQUEST_SIZE = 1_048_576  # kafka-python's default producer limit
RECORD_BATCH_FRAMING_BYTES = 87  # measured: the largest value that fits is 1048576 - 87 - key
FLUSH_TIMEOUT_SEC = 120.0  # kafka-python's delivery_timeout_ms
ABORT_TIMEOUT_SEC = 10.0  # for a forced close to fail the unsent records
CONSUMER_KEYS = ("enable_auto_commit", "auto_commit_interval_ms", "auto_offset_reset",
                 "session_timeout_ms", "heartbeat_interval_ms", "max_poll_interval_ms",
                 "max_poll_records")
PRODUCER_DEFAULTS = {"producer_acks": "all (-1)", "producer_enable_idempotence": True,
                     "producer_linger_ms": 0, "producer_max_request_size": MAX_REQUEST_SIZE}
BATCHED_PRODUCER = {"producer_batch_size": 1_000_000, "producer_linger_ms": 5}


def consumer_settings(*, auto_commit: bool) -> dict[str, object]:
    return {
        "enable_auto_commit": auto_commit,
        "auto_commit_interval_ms": AUTO_COMMIT_INTERVAL_MS,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
        "max_poll_interval_ms": MAX_POLL_INTERVAL_MS,
        "max_poll_records": 500,
        "commit_after_each_message": not auto_commit,
        "group_protocol": "classic",
        "poll_timeout_sec": POLL_TIMEOUT_SEC,
        **PRODUCER_DEFAULTS,
    }


class KafkaPythonProducer:
    def __init__(self, bootstrap: str, topic: str, **options: object) -> None:
        self.topic = topic
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, **options)
        # Connected means the topic's leader is known: the first send would wait for it.
        self._producer.partitions_for(topic)
        self._failures: list[BaseException] = []

    def send(self, payload: bytes, *, key: str | None = None) -> None:
        self._raise_failure()
        future = self._producer.send(self.topic, value=payload,
                                     key=key.encode() if key is not None else None)
        future.add_errback(self._failures.append)

    def send_async(self, payload: bytes, *, key: str | None = None, on_done: Done) -> None:
        """`send()` with its own future's callbacks telling `on_done`: once the broker
        acknowledged the record (acks=all), or what kafka-python's I/O thread met."""
        try:
            sent = self._producer.send(self.topic, value=payload,
                                       key=key.encode() if key is not None else None)
        except Exception as exc:  # refused before sending, e.g. MessageSizeTooLargeError
            on_done(exc)
            return
        sent.add_callback(lambda _metadata: on_done(None))
        sent.add_errback(on_done)

    def flush(self) -> None:
        try:
            self._producer.flush(timeout=FLUSH_TIMEOUT_SEC)
        except KafkaTimeoutError as exc:  # its own text: "Timeout waiting for future"
            raise KafkaTimeoutError(f"records sent but not acknowledged by the broker within "
                                    f"{FLUSH_TIMEOUT_SEC:.0f} s") from exc
        self._raise_failure()

    def close(self) -> None:
        """Bounded: with no timeout, close() flushed for over ten minutes against a broker that
        500 consumers had overloaded, though every record's delivery timeout had passed."""
        try:
            self._producer.close(timeout=FLUSH_TIMEOUT_SEC)
        except KafkaTimeoutError:
            # kafka-python 3's close() raises when its flush times out, before its own force
            # close, leaving the I/O thread retrying; close(0) flushes and raises the same, so
            # the sender is forced by hand: it fails what is unsent, and close() then ends.
            self._producer._sender.force_close()
            self._producer.close(timeout=ABORT_TIMEOUT_SEC)

    def _raise_failure(self) -> None:
        if self._failures:
            raise self._failures[0]


class KafkaPythonAdapter(KafkaPairBase):
    scheme = "kafka-python+kafka"
    library = "kafka-python"
    capabilities = Capabilities(
        ack="default: the position is auto-committed every 5 s inside poll(), after the previous "
            "batch was handled; commit-after: a synchronous commit after each message",
        on_worker_killed="records handled since the last commit come again (duplicates); the "
                         "record in hand was not committed, so it comes again too: no loss",
        redelivery_after="the killed member's session timeout (10 s here), then the next member "
                         "reads on from the committed offset",
        ordering="offset order (one partition)",
        carries_bytes="raw bytes as the record value; key = str(seq)",
        serializer="none: raw bytes reach the handler, nothing is unpickled or decoded",
        durability="producer acks=all (-1), idempotence on, retries unbounded within "
                   "delivery_timeout_ms 120 s (kafka-python 3 defaults; batched-producer changes "
                   "batching only); the topic has one replica, so all means the leader alone",
    )
    size_limit = SizeLimit(
        max_bytes=MAX_REQUEST_SIZE,
        error="kafka.errors.MessageSizeTooLargeError: [Error 10] MessageSizeTooLargeError: The "
              "message is N bytes when serialized which is larger than the maximum request size "
              "you have configured with the max_request_size configuration (raised by send(), "
              f"nothing sent; broker message.max.bytes is {BROKER_MESSAGE_MAX_BYTES})",
        overhead=lambda n: n + RECORD_BATCH_FRAMING_BYTES + KEY_ALLOWANCE_BYTES,
    )
    variants = (*kafka_variants(consumer_settings,
                                "kafka-python's defaults: auto-commit every 5 s"),
                # kafka-python's batch_size (16,384 bytes) is smaller than one 100-record JSON
                # payload (17.5 KB): each message is a request of its own. librdkafka batches
                # up to 1 MB; this is kafka-python asked to do the same.
                Variant("batched-producer",
                        {**consumer_settings(auto_commit=True), **BATCHED_PRODUCER},
                        redelivery_sec=SESSION_TIMEOUT_MS / 1000,
                        note="the defaults, with the producer batching as librdkafka does: "
                             "batch_size 1,000,000 bytes, linger_ms 5"))
    on_failure = f"{DROPPED_BY_THE_LOOP}; its offset is committed with the next"
    concurrency_unit = group_members("KafkaConsumer")

    def producer(self) -> KafkaPythonProducer:
        options = {key.removeprefix("producer_"): value for key, value in self.settings.items()
                   if key in BATCHED_PRODUCER}
        return KafkaPythonProducer(self.bootstrap, self.queue, **options)

    def consume(self, handle: Callable[[bytes], None], stopping: threading.Event) -> None:
        consumer = KafkaConsumer(self.queue, bootstrap_servers=self.bootstrap,
                                 group_id=self.group_id,
                                 **{key: self.settings[key] for key in CONSUMER_KEYS})
        commit_each = bool(self.settings["commit_after_each_message"])
        poll_ms = int(float(self.settings["poll_timeout_sec"]) * 1000)
        try:
            while not stopping.is_set():
                for partition, records in consumer.poll(timeout_ms=poll_ms).items():
                    for record in records:
                        if stopping.is_set():
                            # Back to the first unhandled record, so close() commits no further.
                            consumer.seek(partition, record.offset)
                            break
                        handle(record.value)
                        if commit_each:
                            consumer.commit({partition: OffsetAndMetadata(
                                record.offset + 1, "", record.leader_epoch)})
        except BaseException:
            # The position is past records that were not handled: commit nothing, as
            # KafkaConsumer.__exit__ does on an exception.
            consumer.close(autocommit=False)
            raise
        consumer.close()  # with auto-commit, commits the position; then leaves the group
