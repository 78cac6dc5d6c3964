"""SQS (ElasticMQ here) through boto3, the pairs' client, with no library around it.

Produce: SendMessageBatch of 10 (the API's most). Consume: ReceiveMessage of 10, then one
DeleteMessageBatch for them. Bodies are text of the size measured.
Tuned: one thread of these calls waits on ElasticMQ's answer most of the time (about as fast as
the boto3 pair), so 4 threads, each with a client of its own, share the messages.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from queuebench.adapters.sqs_common import MAX_BATCH_ENTRIES, endpoint_for, sqs_client
from queuebench.ceilings.ceiling import Rates, messages_for, timed
from queuebench.services import SERVICES
from queuebench.services.catalog import HOST

SERVICE = "elasticmq"
TOOL = "boto3 SendMessageBatch / ReceiveMessage + DeleteMessageBatch"
THREADS = 4
EMPTY_RECEIVES_BEFORE_GIVING_UP = 5  # of 1 s long polls each


def default_messages(size_bytes: int) -> int:
    return messages_for(size_bytes, least=5_000, most=20_000, total_bytes=100_000_000)


def new_client():
    endpoint = endpoint_for(f"boto3+sqs://{HOST}:{SERVICES[SERVICE].port}")
    return sqs_client(endpoint, connect_timeout=5, read_timeout=30, total_max_attempts=3)


def measure(size_bytes: int, messages: int) -> Rates:
    client = new_client()
    queue_url = client.create_queue(QueueName=f"qb-ceiling-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    body = "x" * size_bytes
    shares = [len(range(i, messages, THREADS)) for i in range(THREADS)]
    clients = [new_client() for _ in range(THREADS)]
    try:
        _, produce_sec = timed(in_threads, clients, [
            functools.partial(produce, queue_url=queue_url, body=body, count=share)
            for share in shares])
        countdown = Countdown(messages)
        in_threads(clients, [functools.partial(consume, queue_url=queue_url,
                                               countdown=countdown)] * THREADS)
    finally:
        client.delete_queue(QueueUrl=queue_url)
    if countdown.left > 0:
        raise ValueError(f"SQS gave back {messages - countdown.left} of the {messages} sent")
    return Rates(messages / produce_sec, messages / countdown.seconds,
                 settings={"threads": THREADS, "batch": MAX_BATCH_ENTRIES, "body": "text"})


class Countdown:
    """Messages left to receive, shared by the threads; it notes when the last one came, as
    the other threads may still wait out a long poll then."""

    def __init__(self, count: int) -> None:
        self.left = count
        self._started = time.perf_counter()
        self.seconds = 0.0
        self._lock = threading.Lock()

    def took(self, count: int) -> None:
        with self._lock:
            self.left -= count
            if self.left <= 0 and not self.seconds:
                self.seconds = time.perf_counter() - self._started


def in_threads(clients: list, tasks: list[Callable[..., None]]) -> None:
    """Each task(client) in a thread of its own, each with a client of its own."""
    with ThreadPoolExecutor(len(tasks)) as pool:
        futures = [pool.submit(task, client) for client, task in zip(clients, tasks, strict=True)]
        for future in futures:
            future.result()


def produce(client, *, queue_url: str, body: str, count: int) -> None:
    for start in range(0, count, MAX_BATCH_ENTRIES):
        entries = [{"Id": str(i), "MessageBody": body}
                   for i in range(min(MAX_BATCH_ENTRIES, count - start))]
        failed = client.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")
        if failed:
            raise ValueError(f"SendMessageBatch refused {failed[0]}")


def consume(client, *, queue_url: str, countdown: Countdown) -> None:
    empty = 0
    while countdown.left > 0 and empty < EMPTY_RECEIVES_BEFORE_GIVING_UP:
        batch = client.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1,
                                       MaxNumberOfMessages=MAX_BATCH_ENTRIES).get("Messages", [])
        empty = 0 if batch else empty + 1
        if batch:
            client.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
            countdown.took(len(batch))
