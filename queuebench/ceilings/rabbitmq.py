"""RabbitMQ's own load tool, PerfTest (Maven Central com.rabbitmq:perf-test), one queue.

Tuned as its documentation advises for throughput, with the pairs' guarantees kept:
- persistent messages on a durable queue, as Celery and Dramatiq publish;
- publisher confirms with up to 1,000 unconfirmed (`-c`), so the produce rate counts only what
  the broker took;
- the consumer acks manually, 100 messages per ack (`-A`), with a prefetch of 1,000 (`-q`).
The producer fills the queue first, then the consumer empties it, as the pairs' figures are
taken. Each rate is PerfTest's own average over its run, which excludes the JVM's start.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from queuebench.ceilings.ceiling import Rates, messages_for
from queuebench.services import SERVICES
from queuebench.services.jvm import rabbitmq_perf_test_command
from queuebench.services.processes import run

SERVICE = "rabbitmq"
PERF_TEST_VERSION = "2.22.1"  # the newest on Maven Central; 2.23.0 is not published there
TOOL = f"PerfTest {PERF_TEST_VERSION}"
CONFIRM_WINDOW = 1000
PREFETCH = 1000
MULTI_ACK_EVERY = 100
TOOL_TIMEOUT_SEC = 600
SENDING = re.compile(r"sending rate avg: ([\d.]+) msg/s")
RECEIVING = re.compile(r"receiving rate avg: ([\d.]+) msg/s")


def default_messages(size_bytes: int) -> int:
    return messages_for(size_bytes, least=20_000, most=200_000, total_bytes=300_000_000)


def measure(size_bytes: int, messages: int) -> Rates:
    queue = f"qb-ceiling-{size_bytes}-{uuid.uuid4().hex[:8]}"
    common = ["--uri", amqp_uri(), "--queue", queue, "--flag", "persistent",
              "--auto-delete", "false"]
    try:
        produced = run(rabbitmq_perf_test_command([
            *common, "--producers", "1", "--consumers", "0", "--pmessages", str(messages),
            "--size", str(size_bytes), "--confirm", str(CONFIRM_WINDOW)]),
            timeout=TOOL_TIMEOUT_SEC)
        consumed = run(rabbitmq_perf_test_command([
            *common, "--producers", "0", "--consumers", "1", "--cmessages", str(messages),
            "--qos", str(PREFETCH), "--multi-ack-every", str(MULTI_ACK_EVERY)]),
            timeout=TOOL_TIMEOUT_SEC)
    finally:
        delete_queue(queue)
    sending, receiving = SENDING.search(produced), RECEIVING.search(consumed)
    if sending is None or receiving is None:
        raise ValueError(f"no average rate in PerfTest's output: {(produced + consumed)[-300:]}")
    return Rates(float(sending.group(1)), float(receiving.group(1)),
                 settings={"flag": "persistent", "confirm": CONFIRM_WINDOW, "qos": PREFETCH,
                           "multi_ack_every": MULTI_ACK_EVERY, "queues": 1},
                 raw={"produce": sending.group(0), "consume": receiving.group(0)})


def amqp_uri() -> str:
    """The broker's URI with no path: PerfTest and pika both take that as the default vhost."""
    return f"amqp://{urlsplit(SERVICES[SERVICE].url).netloc}"


def delete_queue(queue: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(amqp_uri()))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()
