"""Kafka's own ProducerPerformance and ConsumerPerformance, run from the broker's jars.

Tuned as a ceiling must be (else a Python client beats it, as measured on this machine):
- `batch.size=1000000`: the default 16 KB is smaller than one 17.5 KB payload, which then goes
  in a batch of its own (2.4k-3.1k records/s instead of 11.3k); librdkafka's default is 1 MB.
- `linger.ms=5` and `acks=all`, as the Python clients send.
- `--warmup-records`: the first fifth of the records warm the JVM up; the produce rate is the
  tool's "steady state" line after them.
- The consume rate is ConsumerPerformance's fetch rate, which leaves out joining the group, as
  a pair's drain rate leaves out its consumer's start.
"""

from __future__ import annotations

import re
import uuid

from queuebench.ceilings.ceiling import Rates, messages_for
from queuebench.services import SERVICES, service
from queuebench.services.catalog import HOST
from queuebench.services.processes import run

SERVICE = "kafka"
TOOL = f"Kafka {SERVICES[SERVICE].version} ProducerPerformance / ConsumerPerformance"
PRODUCER_SETTINGS = {"acks": "all", "linger.ms": "5", "batch.size": "1000000"}
STEADY_STATE = re.compile(r"steady state records sent, ([\d.]+) records/sec")
TOOL_TIMEOUT_SEC = 600


def default_messages(size_bytes: int) -> int:
    return messages_for(size_bytes, least=50_000, most=500_000, total_bytes=500_000_000)


def measure(size_bytes: int, messages: int) -> Rates:
    kafka = service(SERVICE)
    bootstrap = f"{HOST}:{kafka.port}"
    topic = f"qb-ceiling-{size_bytes}-{uuid.uuid4().hex[:8]}"
    warmup = max(1, messages // 5)
    try:
        produced = run(kafka.tool_command("producer", [
            "--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(messages),
            "--warmup-records", str(warmup), "--throughput", "-1",
            "--record-size", str(size_bytes), "--command-property",
            *(f"{key}={value}" for key, value in PRODUCER_SETTINGS.items()),
        ]), timeout=TOOL_TIMEOUT_SEC)
        consumed = run(kafka.tool_command("consumer", [
            "--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(messages),
            "--group", topic, "--timeout", "60000", "--hide-header",
        ]), timeout=TOOL_TIMEOUT_SEC)
    finally:
        delete_topic(bootstrap, topic)
    steady = STEADY_STATE.search(produced)
    if steady is None:
        raise ValueError(f"no steady-state line in ProducerPerformance's output: {produced[-300:]}")
    # start.time, end.time, MB, MB.sec, nMsg, nMsg.sec, rebalance.ms, fetch.ms, fetch.MB.sec,
    # fetch.nMsg.sec
    consumer_line = consumed.strip().splitlines()[-1]
    fetch_msg_s = float(consumer_line.split(",")[-1])
    return Rates(float(steady.group(1)), fetch_msg_s,
                 settings={"producer": PRODUCER_SETTINGS, "warmup_records": warmup,
                           "consume_rate": "fetch.nMsg.sec", "topic_partitions": 1},
                 raw={"produce": steady.group(0), "consume": consumer_line})


def delete_topic(bootstrap: str, topic: str) -> None:
    """The records go: a full run writes about 1 GB. A topic never made (the tool failed to
    start) is no error of its own."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    # Kept alive until the futures are done; errors only, not librdkafka's notices on exit.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    for future in admin.delete_topics([topic]).values():
        try:
            future.result(timeout=30)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
