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
(1,749,164 bytes) is over the 1 MiB limit even before base64. The limit counts the batch too
(AWS: all bodies of a SendMessageBatch together; ElasticMQ 1.7.1 checks their sum), so the producer
sends a batch when it holds 10 messages, when the next one would take it over 1 MiB, or 200 ms
after its first message came (the default of the AWS SDK for Java's batching clients,
maxBatchOpenMs; without a bound, a message sent at 1 msg/s waited 9 s for nine more).
ElasticMQ 1.7.1 (strict limits) rejects an over-size body, alone or in a batch, with the whole
call failing `InvalidAttributeValue: MessageTooLong`; AWS answers `InvalidParameterValue`
(documented, not run here) and, in a batch, reports the entry under `Failed`, which raises here.

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
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from queuebench.adapters.base import (
    DROPPED_BY_THE_LOOP,
    Adapter,
    Backlog,
    Capabilities,
    Done,
    SizeLimit,
    Variant,
    base64_size,
)
from queuebench.errors import BrokerUnreachable, QueuebenchError, UsageError
from queuebench.redact import redact

MAX_MESSAGE_BYTES = 1_048_576  # AWS since 2025 (262,144 before); ElasticMQ strict since 1.7.0
MAX_BATCH_ENTRIES = 10
DEFAULT_BATCH_OPEN_MS = 200  # QueueBufferConfig.MAX_BATCH_OPEN_MS_DEFAULT, AWS SDK for Java
DEFAULT_VISIBILITY_TIMEOUT_SEC = 10  # SQS's own default is 30 s
DEFAULT_RECEIVE_WAIT_TIME_SEC = 1
DEFAULT_CONNECT_TIMEOUT_SEC = 5.0
DEFAULT_READ_TIMEOUT_SEC = 30.0
BOTOCORE_RETRIES = {"mode": "standard", "total_max_attempts": 3}  # botocore 1.44's defaults
LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "queuebench", "aws_secret_access_key": "queuebench"}
AWS_HOST = re.compile(r"sqs\.([a-z0-9-]+)\.amazonaws\.com")
QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
IN_QUEUE_COUNTS = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                   "ApproximateNumberOfMessagesDelayed")
# ElasticMQ keeps its queues in memory: a restart loses them, and every message in them.
QUEUE_GONE_CODES = {"QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"}
QUEUE_GONE = Backlog(waiting=0, detail="the queue no longer exists: the broker lost it, with "
                                       "every message in it")


def queue_gone(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in QUEUE_GONE_CODES


def delete_queue_named(client, name: str) -> None:
    """Delete the queue; one already gone (an in-memory ElasticMQ restarted) is as asked."""
    try:
        client.delete_queue(QueueUrl=client.get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as exc:
        if not queue_gone(exc):
            raise


@dataclass(frozen=True)
class Endpoint:
    url: str
    region: str
    aws: bool


def endpoint_for(pair_url: str) -> Endpoint:
    """`boto3+sqs://host:port` -> plain http (ElasticMQ); `sqs.<region>.amazonaws.com` -> https."""
    address = urlsplit(pair_url)
    if not address.hostname:
        raise UsageError(f"{redact(pair_url)!r}: expected boto3+sqs://HOST:PORT, "
                         "e.g. boto3+sqs://127.0.0.1:9324 or boto3+sqs://sqs.eu-west-1.amazonaws.com")
    if "@" in address.netloc:  # else the endpoint, printed in errors, would carry a password
        raise UsageError(f"{redact(pair_url)!r}: credentials do not go in the URL; boto3 takes "
                         "them from its usual chain (environment, ~/.aws)")
    aws = AWS_HOST.fullmatch(address.hostname)
    if aws:
        return Endpoint(f"https://{address.netloc}", aws.group(1), aws=True)
    return Endpoint(f"http://{address.netloc}", LOCAL_REGION, aws=False)


def sqs_client(endpoint: Endpoint, *, connect_timeout: float, read_timeout: float,
               total_max_attempts: int):
    config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout,
                    retries={**BOTOCORE_RETRIES, "total_max_attempts": total_max_attempts})
    if endpoint.aws:
        return boto3.session.Session().client("sqs", endpoint_url=endpoint.url,
                                              region_name=endpoint.region, config=config)
    # No config or credentials file, no profile from the environment: a user's ~/.aws (a broken
    # file, a missing AWS_PROFILE, an adaptive retry mode) cannot change or break a local run.
    ignore_files = botocore.session.Session(session_vars={
        "profile": (None, None, None, None),
        "config_file": (None, None, os.devnull, None),
        "credentials_file": (None, None, os.devnull, None),
    })
    return boto3.session.Session(botocore_session=ignore_files).client(
        "sqs", endpoint_url=endpoint.url, region_name=endpoint.region, config=config,
        **LOCAL_CREDENTIALS)


class BatchEntryFailed(QueuebenchError):
    """SQS accepted a batch call but refused some of its entries (AWS reports them so)."""


class BatchingProducer:
    """Buffers up to 10 base64 bodies and sends them with one SendMessageBatch call, when ten
    wait, when the next would take the batch over its byte limit, or when the oldest has waited
    `max_open_sec` (a timer thread sends it then, as AWS's own batching clients do).

    A send can therefore fail at a later send() or at flush(), which raise; close() flushes.
    `send_async` buffers the same way (`holds_sends`): its `on_done` is told once the batch call
    was answered, that entry's outcome (the call's exception, or the entry's `Failed` report);
    those failures are not raised again.
    """

    holds_sends = True

    def __init__(self, client, queue_url: str, *, max_entries: int, max_batch_bytes: int,
                 max_open_sec: float) -> None:
        self.client = client
        self.queue_url = queue_url
        self.max_entries = max_entries
        self.max_batch_bytes = max_batch_bytes
        self.max_open_sec = max_open_sec
        self._bodies: list[str] = []
        self._told: list[Done | None] = []  # None: buffered by send(), which raises
        self._batch_bytes = 0
        self._opened = 0.0  # when the batch's first body came
        self._failure: BaseException | None = None  # of a send() the timer sent: raised next
        self._closed = False
        # One lock over the buffer and the batch call, so batches go in order, one at a time.
        self._lock = threading.Condition(threading.RLock())
        self._timer = threading.Thread(target=self._send_open_batches, daemon=True,
                                       name="sqs-batch-timer")
        self._timer.start()

    def send(self, payload: bytes, *, key: str | None = None) -> None:
        """Queue `payload`; `key` is unused: a standard queue has no groups or order."""
        self._add(payload, None)

    def send_async(self, payload: bytes, *, key: str | None = None, on_done: Done) -> None:
        """Queue `payload` as send() does; `on_done` is told when its batch was answered."""
        self._add(payload, on_done)

    def _add(self, payload: bytes, on_done: Done | None) -> None:
        body = base64.b64encode(payload).decode("ascii")
        with self._lock:
            if on_done is None:  # send_async raises nothing, as the Producer contract says
                self._raise_timers_failure()
            if self._bodies and self._batch_bytes + len(body) > self.max_batch_bytes:
                self.flush()  # alone over the limit, it still goes: the broker's error is the point
            if not self._bodies:
                self._opened = time.monotonic()
                self._lock.notify()
            self._bodies.append(body)
            self._told.append(on_done)
            self._batch_bytes += len(body)
            if len(self._bodies) >= self.max_entries:
                self.flush()

    def _send_open_batches(self) -> None:
        with self._lock:
            while not self._closed:
                if not self._bodies:
                    self._lock.wait()
                    continue
                left = self._opened + self.max_open_sec - time.monotonic()
                if left > 0:
                    self._lock.wait(left)
                    continue
                try:
                    self._send_batch()
                except Exception as exc:  # a send()'s failure, for its caller's next call
                    self._failure = exc

    def _raise_timers_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def flush(self) -> None:
        with self._lock:
            self._raise_timers_failure()
            self._send_batch()

    def _send_batch(self) -> None:
        if not self._bodies:
            return
        # Taken off the buffer first: a batch that failed is reported once, not re-sent by close().
        bodies, told = self._bodies, self._told
        self._bodies, self._told, self._batch_bytes = [], [], 0
        try:
            response = self.client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)])
        except Exception as exc:
            for on_done in told:
                if on_done is not None:
                    on_done(exc)
            if None in told:
                raise
            return
        refused = {f["Id"]: f for f in response.get("Failed", [])}
        took = {s["Id"] for s in response.get("Successful", [])}
        for i, on_done in enumerate(told):
            if on_done is None:
                continue
            if str(i) in took:
                on_done(None)
            else:
                entry = refused.get(str(i), {"Code": "missing from its response"})
                on_done(BatchEntryFailed(
                    f"SendMessageBatch refused the message: {entry.get('Code')}: "
                    f"{entry.get('Message', '')}"))
        failed = [refused[str(i)] for i, on_done in enumerate(told)
                  if on_done is None and str(i) in refused]
        if failed:
            reasons = "; ".join(f"entry {f['Id']}: {f.get('Code')}: {f.get('Message', '')}"
                                for f in failed)
            raise BatchEntryFailed(f"SendMessageBatch refused {len(failed)} of {len(bodies)} "
                                   f"messages: {reasons}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._timer.join()
        try:
            self.flush()
        finally:
            self.client.close()


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
