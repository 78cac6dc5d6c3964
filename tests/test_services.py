"""The services tool runs real brokers: each answers a client, survives a restart, stops.

The broker tests restart the broker they test and leave it running at the end, because
the test modules after this one use the brokers that `make services-up` started.
"""

import asyncio
import dataclasses
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from queuebench.services import SERVICES, Service, ServiceError, service
from queuebench.services.catalog import HOST
from queuebench.services.debian import Redis

REPO_ROOT = Path(__file__).resolve().parents[1]
ONE_MIB = 1024 * 1024
SEED_PAYLOAD_BYTES = 1_724_183  # 10,000 stock records as JSON, the seed's failing message


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def check_lifecycle(name: str, round_trip: Callable[[Service], None]) -> None:
    """start, round trip, restart, round trip, stop, 'stopped'; then start it again."""
    broker = service(name)
    assert broker.start().state == "healthy"
    try:
        round_trip(broker)
        assert broker.restart().state == "healthy"
        round_trip(broker)
        broker.stop()
        assert broker.status().state == "stopped"
        assert broker.pid() is None
    finally:
        broker.start()


# --- Redis ---

def redis_round_trip(broker: Service) -> None:
    import redis

    with redis.Redis.from_url(broker.url) as client:
        key = unique("queuebench-test")
        client.lpush(key, b"hello")
        assert client.brpop([key], timeout=5) == (key.encode(), b"hello")


@pytest.mark.broker("redis")
def test_redis_answers_before_and_after_restart_and_stops() -> None:
    """Redis takes a list push and a blocking pop, again after a restart, and reports
    'stopped' once stopped."""
    check_lifecycle("redis", redis_round_trip)


# --- RabbitMQ ---

def rabbitmq_round_trip(broker: Service) -> None:
    import pika

    # Not pika.URLParameters(broker.url): pika reads the "//" of Celery-style URLs as
    # vhost "" instead of "/".
    connection = pika.BlockingConnection(pika.ConnectionParameters(HOST, broker.port))
    try:
        channel = connection.channel()
        queue = unique("queuebench-test")
        channel.queue_declare(queue, auto_delete=True)
        channel.basic_publish(exchange="", routing_key=queue, body=b"hello")
        deadline = time.monotonic() + 5
        body = None
        while body is None and time.monotonic() < deadline:
            _, _, body = channel.basic_get(queue, auto_ack=True)
        assert body == b"hello"
        channel.queue_delete(queue)
    finally:
        connection.close()


@pytest.mark.broker("rabbitmq")
def test_rabbitmq_answers_before_and_after_restart_and_stops() -> None:
    """RabbitMQ routes a message to a queue and hands it back over AMQP, again after a
    restart, and reports 'stopped' once stopped."""
    check_lifecycle("rabbitmq", rabbitmq_round_trip)


# --- PostgreSQL ---

def postgres_round_trip(broker: Service) -> None:
    import psycopg

    with psycopg.connect(broker.url, connect_timeout=5) as connection:
        connection.execute("CREATE TEMPORARY TABLE probe (body text)")
        connection.execute("INSERT INTO probe VALUES (%s)", ("hello",))
        assert connection.execute("SELECT body FROM probe").fetchall() == [("hello",)]


@pytest.mark.broker("postgres")
def test_postgres_takes_a_connection_for_each_of_seed_000s_900_consumers() -> None:
    import psycopg

    with psycopg.connect(service("postgres").url, connect_timeout=5) as connection:
        (limit,) = connection.execute("SHOW max_connections").fetchone()
    assert int(limit) > 900


@pytest.mark.broker("postgres")
def test_postgres_answers_before_and_after_restart_and_stops() -> None:
    """PostgreSQL accepts the queuebench user's password over TCP, stores and returns a
    row, again after a restart, and reports 'stopped' once stopped."""
    check_lifecycle("postgres", postgres_round_trip)


# --- Kafka ---

def kafka_bootstrap(broker: Service) -> str:
    return f"{HOST}:{broker.port}"


def kafka_python_round_trip(broker: Service) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = unique("queuebench-test")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap(broker))
    producer.send(topic, b"hello").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap(broker),
                             auto_offset_reset="earliest", consumer_timeout_ms=15_000)
    consumer.assign([TopicPartition(topic, 0)])
    record = next(consumer, None)  # None once consumer_timeout_ms passes without a record
    consumer.close()
    assert record is not None and record.value == b"hello"


def confluent_kafka_round_trip(broker: Service) -> None:
    from confluent_kafka import Consumer, Producer

    topic = unique("queuebench-test")
    producer = Producer({"bootstrap.servers": kafka_bootstrap(broker)})
    producer.produce(topic, b"hello")
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap(broker), "group.id": topic,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is not None and message.error() is None:
                assert message.value() == b"hello"
                return
        pytest.fail("confluent-kafka consumed nothing within 30 s")
    finally:
        consumer.close()


def aiokafka_round_trip(broker: Service) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def produce_and_consume() -> bytes:
        topic = unique("queuebench-test")
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap(broker))
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap(broker),
                                    group_id=topic, auto_offset_reset="earliest")
        await consumer.start()
        try:
            return (await asyncio.wait_for(consumer.getone(), 30)).value
        finally:
            await consumer.stop()

    assert asyncio.run(produce_and_consume()) == b"hello"


def test_a_kafka_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """One random id in 64 starts with "-", and the storage tool read it as an option: a fresh
    machine's `services up` failed on it. Like Kafka's Uuid.randomUuid, such an id is redrawn."""
    from queuebench.services import jvm

    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=bytes(range(16)))])
    monkeypatch.setattr(jvm.uuid, "uuid4", lambda: next(draws))
    assert jvm.new_cluster_id() == "AAECAwQFBgcICQoLDA0ODw"


@pytest.mark.broker("kafka")
def test_kafka_answers_before_and_after_restart_and_stops() -> None:
    """Kafka stores a record and serves it to kafka-python, again after a restart, and
    reports 'stopped' once stopped."""
    check_lifecycle("kafka", kafka_python_round_trip)


@pytest.mark.broker("kafka")
@pytest.mark.parametrize("round_trip", [kafka_python_round_trip, confluent_kafka_round_trip,
                                        aiokafka_round_trip],
                         ids=["kafka-python", "confluent-kafka", "aiokafka"])
def test_kafka_works_with_each_python_client(round_trip: Callable[[Service], None]) -> None:
    """The pinned Kafka version accepts produce and consume from all three Python clients
    (Kafka 4 dropped old protocol versions, so this is not a given)."""
    broker = service("kafka")
    broker.start()
    round_trip(broker)


@pytest.mark.broker("kafka")
def test_kafka_rejects_the_seed_payload_as_too_large() -> None:
    """A 1.7 MB record fails with MessageSizeTooLargeError: in kafka-python itself at its
    default max_request_size, and at the broker (default message.max.bytes) when the client
    limit is raised."""
    from kafka import KafkaProducer
    from kafka.errors import MessageSizeTooLargeError

    broker = service("kafka")
    broker.start()
    record = b"x" * SEED_PAYLOAD_BYTES
    topic = unique("queuebench-test")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap(broker))
    with pytest.raises(MessageSizeTooLargeError, match="max_request_size"):
        producer.send(topic, record).get(timeout=30)
    producer.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap(broker),
                             max_request_size=2 * SEED_PAYLOAD_BYTES, retries=0)
    with pytest.raises(MessageSizeTooLargeError) as rejected_by_broker:
        producer.send(topic, record).get(timeout=30)
    producer.close()
    assert "max_request_size" not in str(rejected_by_broker.value)


# --- ElasticMQ (SQS) ---

def sqs_client(broker: Service):
    import boto3

    return boto3.client("sqs", endpoint_url=f"http://{HOST}:{broker.port}",
                        region_name="us-east-1", aws_access_key_id="queuebench",
                        aws_secret_access_key="queuebench")


def elasticmq_round_trip(broker: Service) -> None:
    client = sqs_client(broker)
    queue_url = client.create_queue(QueueName=unique("queuebench-test"))["QueueUrl"]
    client.send_message(QueueUrl=queue_url, MessageBody="hello")
    messages = client.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)["Messages"]
    assert [message["Body"] for message in messages] == ["hello"]
    client.delete_queue(QueueUrl=queue_url)


@pytest.mark.broker("elasticmq")
def test_elasticmq_answers_before_and_after_restart_and_stops() -> None:
    """ElasticMQ creates a queue and passes a message through the SQS API, again after a
    restart, and reports 'stopped' once stopped."""
    check_lifecycle("elasticmq", elasticmq_round_trip)


@pytest.mark.broker("elasticmq")
def test_elasticmq_enforces_the_1_mib_sqs_limit() -> None:
    """Like AWS SQS since 2025, ElasticMQ takes a 300 KB body (over the old 256 KiB limit)
    and rejects a body over 1 MiB with MessageTooLong."""
    from botocore.exceptions import ClientError

    broker = service("elasticmq")
    broker.start()
    client = sqs_client(broker)
    queue_url = client.create_queue(QueueName=unique("queuebench-test"))["QueueUrl"]
    try:
        client.send_message(QueueUrl=queue_url, MessageBody="x" * 300_000)
        with pytest.raises(ClientError, match="MessageTooLong"):
            client.send_message(QueueUrl=queue_url, MessageBody="x" * (ONE_MIB + 1))
    finally:
        client.delete_queue(QueueUrl=queue_url)


# --- Toxiproxy ---

@pytest.fixture
def echo_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that echoes one message per connection; yields its port."""
    listener = socket.create_server((HOST, 0))
    listener.settimeout(0.2)
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.sendall(connection.recv(1024))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stopping.set()
    thread.join()
    listener.close()


def toxiproxy_round_trip_to(upstream_port: int) -> Callable[[Service], None]:
    def round_trip(broker: Service) -> None:
        import json
        import urllib.request

        proxy = {"name": unique("echo"), "listen": f"{HOST}:0",
                 "upstream": f"{HOST}:{upstream_port}"}
        request = urllib.request.Request(
            f"{broker.url}/proxies", data=json.dumps(proxy).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            listen_port = int(json.load(response)["listen"].rsplit(":", 1)[1])
        with socket.create_connection((HOST, listen_port), timeout=5) as connection:
            connection.sendall(b"hello")
            assert connection.recv(1024) == b"hello"
        delete = urllib.request.Request(f"{broker.url}/proxies/{proxy['name']}", method="DELETE")
        urllib.request.urlopen(delete, timeout=5).close()

    return round_trip


@pytest.mark.broker("toxiproxy")
def test_toxiproxy_proxies_before_and_after_restart_and_stops(echo_server: int) -> None:
    """Toxiproxy's API creates a proxy that carries bytes both ways to an upstream server,
    again after a restart, and it reports 'stopped' once stopped."""
    check_lifecycle("toxiproxy", toxiproxy_round_trip_to(echo_server))


# --- without brokers ---

def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "queuebench.services", *args],
                          capture_output=True, text=True, timeout=60)


def test_unknown_service_name_is_one_line_and_exit_2() -> None:
    """A name that is not a service gives exit status 2 and one line naming the choices."""
    for command in (["start", "nosuchbroker"], ["status", "redis", "nosuchbroker"],
                    ["logs", "nosuchbroker"]):
        result = run_cli(*command)
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0
        assert "nosuchbroker" in result.stderr and "redis" in result.stderr
        assert "Traceback" not in result.stderr
    with pytest.raises(ValueError, match="unknown service"):
        service("nosuchbroker")


def test_unknown_command_is_one_line_and_exit_2() -> None:
    """An unknown command is reported on one line with exit status 2."""
    result = run_cli("launch", "redis")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0


def test_a_port_held_by_another_program_is_reported_not_fought_over(tmp_path: Path) -> None:
    """When a service's port is taken by a process we did not start, status says 'foreign'
    and names the holder, and start refuses instead of launching a second server."""
    with socket.create_server((HOST, 0)) as squatter:
        port = squatter.getsockname()[1]
        spec = dataclasses.replace(SERVICES["redis"], port=port)
        impostor = Redis(spec, tmp_path)
        status = impostor.status()
        assert status.state == "foreign"
        assert str(port) in status.detail
        with pytest.raises(ServiceError, match=f"port {port}"):
            impostor.start()
        impostor.stop()  # not ours: leaves it alone
        assert impostor.status().state == "foreign"


def test_docker_compose_matches_the_services_tool() -> None:
    """docker-compose.yml is valid YAML and runs each service with the catalog's image
    version and port, published on 127.0.0.1 only."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert set(compose["services"]) == set(SERVICES)
    for name, spec in SERVICES.items():
        definition = compose["services"][name]
        assert definition["image"] == f"{spec.docker_image}:{spec.version}", name
        assert f"{HOST}:{spec.port}:{spec.port}" in definition["ports"], name
        assert all(str(port).startswith(f"{HOST}:") for port in definition["ports"]), name


@pytest.mark.parametrize("name, property_name", [("kafka", "kafka.version"),
                                                 ("elasticmq", "elasticmq.version")])
def test_poms_pin_the_catalog_versions(name: str, property_name: str) -> None:
    """The Maven poms fetch the same versions that the catalog reports."""
    pom = (REPO_ROOT / "queuebench" / "services" / name / "pom.xml").read_text()
    match = re.search(rf"<{re.escape(property_name)}>([^<]+)</", pom)
    assert match is not None and match[1] == SERVICES[name].version
