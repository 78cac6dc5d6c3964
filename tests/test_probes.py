"""A probe connects and asks; it writes nothing.

`queuebench pairs` and the runner's check before a run build each pair's adapter for a queue and
call `check_reachable`. Each test here snapshots what the broker holds, probes with a queue name
of its own, and finds nothing new: no file or folder for the embedded pairs, no RabbitMQ queue or
exchange, no Kafka topic (the broker auto-creates a topic a metadata request names), no SQS queue,
no PostgreSQL table, no Redis key and no Redis command that writes.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from queuebench import adapters
from queuebench.cli import main
from queuebench.errors import BrokerUnreachable
from tests.pairs import pair_params

TIMEOUT_SEC = 10.0
PROBE_QUEUE = "queuebench-probe"  # the name `queuebench pairs` and the runner probe with
# Redis probes run against a database no other test uses, so that whatever appears is theirs.
REDIS_DB = 9
# Kafka creates a topic that a metadata request names a moment after answering it.
KAFKA_SETTLE_SEC = 1.5


def fresh_name() -> str:
    return f"qbprobe-{uuid.uuid4().hex[:12]}"


def probe(scheme: str, url: str | None = None, *, queue: str) -> None:
    """What `queuebench pairs` and the runner do: build the adapter, check, clean up."""
    entry = adapters.PAIRS[scheme]
    adapter = adapters.adapter_class(entry)(url or entry.default_url, queue=queue)
    try:
        adapter.check_reachable(TIMEOUT_SEC)
    finally:
        adapter.cleanup()


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` with its size and modification time."""
    return {str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
            for path in root.rglob("*")}


# --- embedded pairs: no server, no file -----------------------------------------------------

EMBEDDED = adapters.GROUPS["embedded"]
DEFAULT_FILES = {scheme: Path(adapters.PAIRS[scheme].default_url.partition(":///")[2])
                 for scheme in EMBEDDED}


@pytest.mark.parametrize("scheme", EMBEDDED)
def test_embedded_probe_creates_no_file_or_folder(scheme, tmp_path):
    """In an empty folder (the default URL's .state/queues/ missing) the probe answers and
    leaves the folder empty: a folder it could make is reachable enough."""
    assert tree(tmp_path) == {}
    probe(scheme, queue=fresh_name())
    assert tree(tmp_path) == {}


@pytest.mark.parametrize("scheme", EMBEDDED)
def test_embedded_probe_leaves_an_existing_database_as_it_was(scheme, tmp_path):
    """A database in WAL mode, as the pairs leave theirs: not a byte or a -wal/-shm file more."""
    path = DEFAULT_FILES[scheme]
    path.parent.mkdir(parents=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    content, before = path.read_bytes(), tree(tmp_path)
    probe(scheme, queue=fresh_name())
    assert tree(tmp_path) == before
    assert path.read_bytes() == content


@pytest.mark.parametrize("scheme", EMBEDDED)
def test_embedded_probe_refuses_a_path_under_a_file(scheme, tmp_path):
    """A folder that cannot be made is unreachable, named in one line; nothing is created."""
    (tmp_path / "file").write_text("")
    before = tree(tmp_path)
    with pytest.raises(BrokerUnreachable, match=r"file/queues/q\.sqlite") as caught:
        probe(scheme, f"{scheme}:///file/queues/q.sqlite", queue=fresh_name())
    assert len(str(caught.value).splitlines()) == 1
    assert tree(tmp_path) == before


@pytest.mark.parametrize("scheme", EMBEDDED)
def test_embedded_probe_refuses_a_file_that_is_not_a_database(scheme, tmp_path):
    (tmp_path / "notes.sqlite").write_text("not a database, just notes\n" * 10)
    before = tree(tmp_path)
    with pytest.raises(BrokerUnreachable, match=r"notes\.sqlite.*not a SQLite database"):
        probe(scheme, f"{scheme}:///notes.sqlite", queue=fresh_name())
    assert tree(tmp_path) == before


# --- Redis: no key, no command that writes ---------------------------------------------------


@pytest.fixture
def redis_db() -> Iterator[object]:
    import redis

    client = redis.Redis(db=REDIS_DB)
    yield client
    client.close()


def redis_snapshot(client) -> dict[bytes, bytes | None]:
    return {key: client.dump(key) for key in client.keys("*")}


def redis_commands_during(client, action) -> list[str]:
    """The commands on `REDIS_DB` while `action` runs, as MONITOR logs them."""
    marker = f"probe-done-{uuid.uuid4().hex}"
    with client.monitor() as monitor:  # MONITOR is on once this returns
        action()
        client.echo(marker)
        commands = []
        while True:
            entry = monitor.next_command()
            if marker in entry["command"]:
                return commands
            if entry.get("db") == REDIS_DB:
                commands.append(entry["command"])


@pytest.mark.parametrize("scheme", pair_params(adapters.GROUPS["redis"]))
def test_redis_probe_writes_nothing(scheme, redis_db):
    url = adapters.PAIRS[scheme].default_url.rpartition("/")[0] + f"/{REDIS_DB}"
    before = redis_snapshot(redis_db)
    commands = redis_commands_during(redis_db, lambda: probe(scheme, url, queue=fresh_name()))
    assert redis_snapshot(redis_db) == before
    flags = redis_db.command()
    writes = [command for command in commands
              if "write" in flags.get(command.split()[0].lower(), {"flags": ["write"]})["flags"]]
    assert not writes, f"the probe sent commands that write: {writes}"


# --- RabbitMQ: no queue, no exchange ---------------------------------------------------------


def rabbitmq_has(kind: str, name: str) -> bool:
    """Whether a queue or exchange `name` exists: a passive declare answers, and creates nothing."""
    import pika
    import pika.exceptions

    connection = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F"))
    try:
        channel = connection.channel()
        try:
            if kind == "queue":
                channel.queue_declare(name, passive=True)
            else:
                channel.exchange_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return False
            raise
        return True
    finally:
        connection.close()


def rabbitmq_names(queue: str) -> list[tuple[str, str]]:
    """The queue and exchange names a probe for `queue` could declare (dramatiq adds .DQ, .XQ)."""
    return [(kind, queue + suffix) for kind in ("queue", "exchange")
            for suffix in ("", ".DQ", ".XQ")]


@pytest.mark.parametrize("scheme", pair_params(adapters.GROUPS["rabbitmq"]))
def test_rabbitmq_probe_declares_nothing(scheme):
    queue = fresh_name()
    assert not any(rabbitmq_has(kind, name) for kind, name in rabbitmq_names(queue))
    try:
        probe(scheme, queue=queue)
        made = [f"{kind} {name}" for kind, name in rabbitmq_names(queue)
                if rabbitmq_has(kind, name)]
        assert not made, f"the probe declared {made}"
    finally:
        _rabbitmq_delete(queue)


def _rabbitmq_delete(queue: str) -> None:
    """Remove what a failing probe declared, so that a failure leaves no litter either."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F"))
    try:
        channel = connection.channel()
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(queue + suffix)
            channel.exchange_delete(queue + suffix)
    finally:
        connection.close()


# --- Kafka: no topic -------------------------------------------------------------------------


@pytest.fixture
def kafka_admin() -> Iterator[object]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092", request_timeout_ms=10_000)
    yield admin
    admin.close()


@pytest.mark.parametrize("scheme", pair_params(adapters.GROUPS["kafka"]))
def test_kafka_probe_creates_no_topic(scheme, kafka_admin):
    queue = fresh_name()
    before = set(kafka_admin.list_topics())
    assert queue not in before
    try:
        probe(scheme, queue=queue)
        time.sleep(KAFKA_SETTLE_SEC)
        new = {topic for topic in set(kafka_admin.list_topics()) - before if queue in topic}
        assert not new, f"the probe created topics {new}"
    finally:
        kafka_admin.delete_topics([queue], raise_errors=False)


# --- SQS: no queue ---------------------------------------------------------------------------


@pytest.fixture
def sqs() -> Iterator[object]:
    from queuebench.adapters.sqs_common import endpoint_for, sqs_client

    client = sqs_client(endpoint_for("boto3+sqs://127.0.0.1:9324"), connect_timeout=5,
                        read_timeout=10, total_max_attempts=1)
    yield client
    client.close()


@pytest.mark.parametrize("scheme", pair_params(adapters.GROUPS["sqs"]))
def test_sqs_probe_creates_no_queue(scheme, sqs):
    queue = fresh_name()
    assert not sqs.list_queues(QueueNamePrefix=queue).get("QueueUrls")
    probe(scheme, queue=queue)
    made = sqs.list_queues(QueueNamePrefix=queue).get("QueueUrls", [])
    for url in made:  # no litter from a failing probe
        sqs.delete_queue(QueueUrl=url)
    assert not made, f"the probe created {made}"


# --- PostgreSQL: no table --------------------------------------------------------------------


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """An empty schema of the test's own, dropped afterwards; probes put it first on their
    search_path, so any table they create lands there and no other test's tables interfere."""
    import psycopg

    schema = fresh_name().replace("-", "_")
    with psycopg.connect("postgresql://queuebench:queuebench@127.0.0.1:5432/queuebench",
                         autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            yield schema
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def pg_tables(schema: str, queue: str) -> set[tuple[str, str]]:
    import psycopg

    with psycopg.connect("postgresql://queuebench:queuebench@127.0.0.1:5432/queuebench") as conn:
        rows = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema = %s OR table_name LIKE %s",
            (schema, f"%{queue.replace('-', '_')}%")).fetchall()
    return set(rows)


@pytest.mark.parametrize("scheme", pair_params(adapters.GROUPS["postgres"]))
def test_postgres_probe_creates_no_table(scheme, pg_schema):
    queue = fresh_name()
    url = adapters.PAIRS[scheme].default_url + "?options=" + quote(f"-csearch_path={pg_schema}")
    before = pg_tables(pg_schema, queue)
    probe(scheme, url, queue=queue)
    assert pg_tables(pg_schema, queue) == before


# --- the command ------------------------------------------------------------------------------


@pytest.mark.broker("redis")
@pytest.mark.broker("rabbitmq")
@pytest.mark.broker("kafka")
@pytest.mark.broker("elasticmq")
@pytest.mark.broker("postgres")
def test_pairs_command_leaves_no_probe_queue_behind(tmp_path, capsys, redis_db, kafka_admin,
                                                    sqs):
    """`queuebench pairs` probes every pair with the queue `queuebench-probe` and answers for
    each; afterwards no broker holds anything of that name and the working folder is empty."""
    import redis

    # What an earlier `pairs` may have left: this test is about what the command does now.
    _rabbitmq_delete(PROBE_QUEUE)
    for url in sqs.list_queues(QueueNamePrefix=PROBE_QUEUE).get("QueueUrls", []):
        sqs.delete_queue(QueueUrl=url)
    assert main(["pairs"]) == 0
    out = capsys.readouterr().out
    assert out.count("broker answers") == len(adapters.PAIRS), out
    assert tree(tmp_path) == {}
    assert not any(rabbitmq_has(kind, name) for kind, name in rabbitmq_names(PROBE_QUEUE))
    assert not sqs.list_queues(QueueNamePrefix=PROBE_QUEUE).get("QueueUrls")
    time.sleep(KAFKA_SETTLE_SEC)
    assert PROBE_QUEUE not in kafka_admin.list_topics()
    with redis.Redis(db=0) as client:
        assert not client.keys(f"*{PROBE_QUEUE}*")


def test_probe_messages_hide_passwords(tmp_path):
    """An unreachable broker's one line names the address but never its password."""
    for url in ("huey+postgres://queuebench:s3cret@127.0.0.1:1/queuebench",
                "sqlalchemy+postgres://queuebench:s3cret@127.0.0.1:1/queuebench",
                "dramatiq+rabbitmq://guest:s3cret@127.0.0.1:1//",
                "celery+rabbitmq://guest:s3cret@127.0.0.1:1//",
                "rq+redis://:s3cret@127.0.0.1:1/0"):
        entry, url = adapters.resolve_url(url)
        with pytest.raises(BrokerUnreachable) as caught:
            adapters.adapter_class(entry)(url, queue=fresh_name()).check_reachable(2.0)
        message = str(caught.value)
        assert "s3cret" not in message and "127.0.0.1" in message, message
        assert len(message.splitlines()) == 1, message
