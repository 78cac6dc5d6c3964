"""boto3 on SQS (ElasticMQ locally): the plain receive, handle, delete loop that SQS users write.

Features: at-least-once, as SQS is by design. ReceiveMessage hides what it returns for the queue's
visibility timeout and nothing removes a message but an explicit DeleteMessage, which the loop
sends only after the handler returns. A consumer killed mid-task leaves the message in hand, and
the rest of its batch of up to 10, invisible in the queue until the timeout ends; then they are
delivered again. A message handled but not yet deleted is handled twice. On SIGTERM the loop
finishes the message in hand and makes the rest of its batch visible at once
(ChangeMessageVisibility 0). A standard queue gives no ordering.

Bodies are text (XML-safe Unicode), so the bytes travel as base64: 4/3 of the payload, e.g. the
10,000-record protobuf payload is 496,395 bytes and 661,860 on the wire, and the JSON one
(1,749,164 bytes) is over the 1 MiB limit even before base64. The producer batches up to 10
messages within 1 MiB, and sends a batch 200 ms after its first message at the latest
(sqs_batching). ElasticMQ 1.7.1 (strict limits) rejects an over-size body, alone or in a
batch, with the whole call failing `InvalidAttributeValue: MessageTooLong`; AWS answers
`InvalidParameterValue` (documented, not run here) and, in a batch, reports the entry under
`Failed`, which raises here.

Connection URL: `boto3+sqs://127.0.0.1:9324` is http://127.0.0.1:9324 with dummy credentials and
region us-east-1; the session reads no ~/.aws file and no AWS_PROFILE, so nothing on the machine
changes a local run. `boto3+sqs://sqs.eu-west-1.amazonaws.com` is real AWS over https, its region
taken from the host and credentials from boto3's usual chain (not run here). On AWS, PurgeQueue
works once a minute: prepare() is meant for the runner's fresh queue names.

Options (the `default` variant): `visibility_timeout_sec` (set on the queue by prepare(); it must
exceed `receive_max_messages` x the work per message, or messages come back while their batch is
still being worked through), `receive_wait_time_sec` (long poll; short so a stop is seen within
a second), batching and botocore's retry and timeout settings, all recorded. botocore counts
`total_max_attempts` with the first call; its `max_attempts` counts retries only (3 means 4 calls).
One DeleteMessage per message is the price of a duplicate window of one message: measured here,
3.6 ms a delete against 4.5 ms a receive of 10.
"""

from __future__ import annotations

import base64
import re
import sys
import threading
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from queuebench.adapters.base import (
    DROPPED_BY_THE_LOOP,
    Adapter,
    Backlog,
    Capabilities,
    SizeLimit,
    Variant,
    base64_size,
)
from queuebench.adapters.sqs_batching import DEFAULT_BATCH_OPEN_MS, BatchingProducer
from queuebench.adapters.sqs_common import (
    BOTOCORE_RETRIES,
    DEFAULT_CONNECT_TIMEOUT_SEC,
    DEFAULT_READ_TIMEOUT_SEC,
    MAX_BATCH_ENTRIES,
    MAX_MESSAGE_BYTES,
    QUEUE_GONE,
    delete_queue_named,
    endpoint_for,
    queue_gone,
    sqs_client,
)
from queuebench.errors import BrokerUnreachable, UsageError

DEFAULT_VISIBILITY_TIMEOUT_SEC = 10  # SQS's own default is 30 s
DEFAULT_RECEIVE_WAIT_TIME_SEC = 1
QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
IN_QUEUE_COUNTS = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                   "ApproximateNumberOfMessagesDelayed")


class Boto3SQSAdapter(Adapter):
    scheme = "boto3+sqs"
    library = "boto3"
    broker = "sqs"
    capabilities = Capabilities(
        ack="DeleteMessage after the handler returns",
        on_worker_killed="received, undeleted messages (the one in hand and the rest of its "
                         "batch) stay in the queue, invisible, and come again; one handled but "
                         "not yet deleted is handled twice",
        redelivery_after="the queue's visibility timeout (10 s here; SQS default 30 s)",
        ordering="none (standard queue): best effort, out of order within a batch",
        carries_bytes="base64 text in the message body (+33%): SQS bodies are Unicode text",
        serializer="none: the body's base64 is decoded to the raw bytes, nothing is unpickled",
        durability="nothing the library sets: SendMessageBatch returns once the service stored "
                   "the batch (AWS: in several AZs; ElasticMQ: in memory, no messages-storage); "
                   "a message still in the producer's batch is in its memory only",
    )
    size_limit = SizeLimit(
        max_bytes=MAX_MESSAGE_BYTES,  # of the body as sent: the base64 text
        error="ElasticMQ 1.7.1 strict: InvalidAttributeValue: MessageTooLong; AWS: "
              "InvalidParameterValue: One or more parameters are invalid. Reason: Message must "
              "be shorter than 1048576 bytes.",
        overhead=base64_size,
    )
    variants = (
        Variant("default", {
            "delete": "DeleteMessage per message, after the handler returns",
            "visibility_timeout_sec": DEFAULT_VISIBILITY_TIMEOUT_SEC,
            "receive_wait_time_sec": DEFAULT_RECEIVE_WAIT_TIME_SEC,
            "receive_max_messages": MAX_BATCH_ENTRIES,
            "send_batch_max_entries": MAX_BATCH_ENTRIES,
            "send_batch_max_bytes": MAX_MESSAGE_BYTES,
            "send_batch_max_open_ms": DEFAULT_BATCH_OPEN_MS,
            "body_encoding": "base64",
            "on_graceful_stop": "finish the message in hand, make the rest of its batch visible",
            "botocore_retry_mode": BOTOCORE_RETRIES["mode"],
            "botocore_total_max_attempts": BOTOCORE_RETRIES["total_max_attempts"],
            "connect_timeout_sec": DEFAULT_CONNECT_TIMEOUT_SEC,
            "read_timeout_sec": DEFAULT_READ_TIMEOUT_SEC,
        }, note="SQS is at-least-once by design: a message received and not deleted comes back "
                "after the visibility timeout, so a crash costs a wait and maybe a duplicate, "
                "never the message", redelivery_sec=DEFAULT_VISIBILITY_TIMEOUT_SEC),
    )
    on_failure = (f"{DROPPED_BY_THE_LOOP}; the message is deleted (left, it would come back "
                  "after each visibility timeout: the queue has no redrive policy)")
    concurrency_unit = ("receive threads of one `queuebench consume` process, each with a "
                        "client of its own: receive up to 10, handle each, delete it")

    def __init__(self, url: str, *, queue: str, variant: str = "default") -> None:
        super().__init__(url, queue=queue, variant=variant)
        if not QUEUE_NAME.fullmatch(queue):
            raise UsageError(f"SQS queue name {queue!r}: 1 to 80 letters, digits, - or _")
        self.endpoint = endpoint_for(url)
        self._client = None
        self._queue_url: str | None = None

    @property
    def client(self):
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self):
        settings = self.settings
        return sqs_client(self.endpoint, connect_timeout=float(settings["connect_timeout_sec"]),
                          read_timeout=float(settings["read_timeout_sec"]),
                          total_max_attempts=int(settings["botocore_total_max_attempts"]))

    @property
    def queue_url(self) -> str:
        if self._queue_url is None:
            self._queue_url = self.client.get_queue_url(QueueName=self.queue)["QueueUrl"]
        return self._queue_url

    def check_reachable(self, timeout: float) -> None:
        # One attempt, each half of the time on connecting and reading: never longer than asked.
        client = sqs_client(self.endpoint, connect_timeout=timeout / 2, read_timeout=timeout / 2,
                            total_max_attempts=1)
        try:
            client.list_queues(QueueNamePrefix=self.queue)
        except (BotoCoreError, ClientError) as exc:
            raise BrokerUnreachable(f"{self.scheme}: no SQS answer from {self.endpoint.url} "
                                    f"within {timeout:g} s: {exc}") from None
        finally:
            client.close()

    def broker_version(self) -> str | None:
        # The SQS API has no version call; ElasticMQ's HTTP Server header is what it tells.
        response = self.client.list_queues(QueueNamePrefix=self.queue)
        server = response["ResponseMetadata"]["HTTPHeaders"].get("server", "no Server header")
        return f"SQS API at {self.endpoint.url} ({server})"

    def prepare(self) -> None:
        attributes = {"VisibilityTimeout": str(self.settings["visibility_timeout_sec"])}
        try:
            self._queue_url = self.client.get_queue_url(QueueName=self.queue)["QueueUrl"]
        except self.client.exceptions.QueueDoesNotExist:
            self._queue_url = self.client.create_queue(QueueName=self.queue,
                                                       Attributes=attributes)["QueueUrl"]
            return
        self.client.set_queue_attributes(QueueUrl=self._queue_url, Attributes=attributes)
        self.client.purge_queue(QueueUrl=self._queue_url)  # in-flight messages go too

    def producer(self) -> BatchingProducer:
        return BatchingProducer(self._new_client(), self.queue_url,
                                max_entries=int(self.settings["send_batch_max_entries"]),
                                max_batch_bytes=int(self.settings["send_batch_max_bytes"]),
                                max_open_sec=float(self.settings["send_batch_max_open_ms"]) / 1000)

    def consume(self, handle: Callable[[bytes], None], stopping: threading.Event) -> None:
        while not stopping.is_set():
            messages = self.client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=int(self.settings["receive_max_messages"]),
                WaitTimeSeconds=int(self.settings["receive_wait_time_sec"]),
            ).get("Messages", [])
            for index, message in enumerate(messages):
                if stopping.is_set():
                    self._release(messages[index:])
                    return
                handle(base64.b64decode(message["Body"], validate=True))
                self._delete(message)

    def _delete(self, message: dict) -> None:
        try:
            self.client.delete_message(QueueUrl=self.queue_url,
                                       ReceiptHandle=message["ReceiptHandle"])
        except ClientError as exc:
            # Handled after its visibility timeout ran out and delivered again since: ElasticMQ
            # refuses the old handle (AWS accepts it and deletes nothing). It comes again either
            # way, which is at-least-once working as designed, so say so and go on.
            if exc.response["Error"]["Code"] != "ReceiptHandleIsInvalid":
                raise
            print(f"boto3+sqs: message {message['MessageId']} outlived its visibility timeout "
                  "and will be delivered again", file=sys.stderr, flush=True)

    def _release(self, messages: list[dict]) -> None:
        """Make received, unhandled messages visible now rather than after the timeout."""
        response = self.client.change_message_visibility_batch(
            QueueUrl=self.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                     for i, m in enumerate(messages)])
        for failed in response.get("Failed", []):
            print(f"boto3+sqs: could not release entry {failed['Id']} ({failed.get('Code')}); "
                  "it comes back after the visibility timeout", file=sys.stderr, flush=True)

    def backlog(self) -> Backlog:
        try:
            counts = self.client.get_queue_attributes(QueueUrl=self.queue_url,
                                                      AttributeNames=list(IN_QUEUE_COUNTS))
        except ClientError as exc:
            if queue_gone(exc):
                return QUEUE_GONE
            raise
        visible, in_flight, delayed = (int(counts["Attributes"].get(name, 0))
                                       for name in IN_QUEUE_COUNTS)
        return Backlog(
            waiting=visible + in_flight + delayed,
            detail=f"{visible} visible, {in_flight} in flight (received, not deleted: back after "
                   f"the {self.settings['visibility_timeout_sec']} s visibility timeout), "
                   f"{delayed} delayed")

    def delete_queue(self) -> None:
        delete_queue_named(self.client, self.queue)

    def cleanup(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
