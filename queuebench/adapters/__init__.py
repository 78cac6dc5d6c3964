"""The registry: a compound URL scheme names a pair, kombu style.

`huey+sqlite:///.state/huey.sqlite` is the pair huey+sqlite at that address. Modules are imported
only when a pair is used, so a missing client library matters only then, and the error says which
extra brings it.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from queuebench.adapters.base import Adapter
from queuebench.errors import MissingExtra, UsageError
from queuebench.redact import redact


@dataclass(frozen=True)
class PairEntry:
    scheme: str
    target: str  # "module:Class"
    extra: str  # pip extra that brings the client library
    default_url: str


PAIRS: dict[str, PairEntry] = {
    entry.scheme: entry
    for entry in (
        # Embedded: no server needed.
        PairEntry("huey+sqlite", "queuebench.adapters.huey:HueyAdapter", "embedded",
                  "huey+sqlite:///.state/queues/huey.sqlite"),
        PairEntry("sqlalchemy+sqlite", "queuebench.adapters.sqlqueue:SqlQueueAdapter", "embedded",
                  "sqlalchemy+sqlite:///.state/queues/sqlqueue.sqlite"),
        PairEntry("celery+sqlite", "queuebench.adapters.celery:CeleryAdapter", "embedded",
                  "celery+sqlite:///.state/queues/celery.sqlite"),
        # Kafka.
        PairEntry("kafka-python+kafka", "queuebench.adapters.kafka_python:KafkaPythonAdapter",
                  "kafka", "kafka-python+kafka://127.0.0.1:9092"),
        PairEntry("confluent-kafka+kafka", "queuebench.adapters.confluent:ConfluentKafkaAdapter",
                  "kafka", "confluent-kafka+kafka://127.0.0.1:9092"),
        PairEntry("faust+kafka", "queuebench.adapters.faust:FaustAdapter", "kafka",
                  "faust+kafka://127.0.0.1:9092"),
        # Redis.
        PairEntry("rq+redis", "queuebench.adapters.rq:RQAdapter", "redis",
                  "rq+redis://127.0.0.1:6379/0"),
        PairEntry("huey+redis", "queuebench.adapters.huey:HueyRedisAdapter", "redis",
                  "huey+redis://127.0.0.1:6379/0"),
        PairEntry("celery+redis", "queuebench.adapters.celery:CeleryRedisAdapter", "redis",
                  "celery+redis://127.0.0.1:6379/0"),
        PairEntry("dramatiq+redis", "queuebench.adapters.dramatiq:DramatiqRedisAdapter", "redis",
                  "dramatiq+redis://127.0.0.1:6379/0"),
        PairEntry("kombu+redis", "queuebench.adapters.kombu:KombuRedisAdapter", "redis",
                  "kombu+redis://127.0.0.1:6379/0"),
        # RabbitMQ.
        PairEntry("celery+rabbitmq", "queuebench.adapters.celery:CeleryRabbitMQAdapter",
                  "rabbitmq", "celery+rabbitmq://guest:guest@127.0.0.1:5672//"),
        PairEntry("dramatiq+rabbitmq", "queuebench.adapters.dramatiq:DramatiqRabbitMQAdapter",
                  "rabbitmq", "dramatiq+rabbitmq://guest:guest@127.0.0.1:5672//"),
        PairEntry("kombu+rabbitmq", "queuebench.adapters.kombu:KombuRabbitMQAdapter",
                  "rabbitmq", "kombu+rabbitmq://guest:guest@127.0.0.1:5672//"),
        # SQS (ElasticMQ locally).
        PairEntry("celery+sqs", "queuebench.adapters.celery:CelerySQSAdapter", "sqs",
                  "celery+sqs://127.0.0.1:9324"),
        PairEntry("boto3+sqs", "queuebench.adapters.boto3_sqs:Boto3SQSAdapter", "sqs",
                  "boto3+sqs://127.0.0.1:9324"),
        # PostgreSQL.
        PairEntry("sqlalchemy+postgres", "queuebench.adapters.sqlqueue:PostgresSqlQueueAdapter",
                  "postgres", "sqlalchemy+postgres://queuebench:queuebench@127.0.0.1:5432/queuebench"),
        PairEntry("huey+postgres", "queuebench.adapters.huey:HueyPostgresAdapter", "postgres",
                  "huey+postgres://queuebench:queuebench@127.0.0.1:5432/queuebench"),
    )
}


# Pairs for the engine's own tests, never offered to users: absent from `queuebench pairs`,
# `sizes`, every group and "did you mean", but resolved from their URL (a consumer process
# creates its adapter from the URL it is given).
TEST_PAIRS: dict[str, PairEntry] = {
    "stub+dir": PairEntry("stub+dir", "queuebench.adapters.stub:StubAdapter", "",
                          "stub+dir:///.state/queues/stub"),
}


def _group(broker: str) -> tuple[str, ...]:
    return tuple(scheme for scheme in PAIRS if scheme.endswith(f"+{broker}"))


GROUPS: dict[str, tuple[str, ...]] = {
    "embedded": _group("sqlite"),
    "kafka": _group("kafka"),
    "redis": _group("redis"),
    "rabbitmq": _group("rabbitmq"),
    "sqs": _group("sqs"),
    "postgres": _group("postgres"),
    "all": tuple(PAIRS),
}


def expand(names: list[str]) -> list[str]:
    """Group names become their pairs; other names pass through, in order, once each."""
    out: list[str] = []
    for name in names:
        for item in GROUPS.get(name, (name,)):
            if item not in out:
                out.append(item)
    return out


def resolve_url(text: str) -> tuple[PairEntry, str]:
    """Map `scheme` or `scheme://...` to its registry entry and a full URL."""
    scheme, sep, _ = text.partition("://")
    if not sep and ":" in text:
        raise UsageError(f"malformed pair URL {redact(text)!r}: expected SCHEME://ADDRESS, "
                         "e.g. huey+sqlite:///.state/huey.sqlite")
    entry = PAIRS.get(scheme) or TEST_PAIRS.get(scheme)
    if entry is None:
        close = difflib.get_close_matches(scheme, PAIRS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise UsageError(f"unknown pair {scheme!r}; {hint}known pairs: {', '.join(PAIRS)}")
    url = text if sep else entry.default_url
    try:
        port = urlsplit(url).port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise UsageError(f"malformed pair URL {redact(url)!r}: {exc}") from None
    del port
    return entry, url


def adapter_class(entry: PairEntry) -> type[Adapter]:
    module_name, _, class_name = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingExtra(f"{entry.scheme} needs its client library ({exc}); "
                           f"install it with: pip install 'queuebench[{entry.extra}]'") from None
    return getattr(module, class_name)


def create(text: str, *, queue: str, variant: str = "default") -> Adapter:
    """The adapter for a pair name or URL, configured but not yet connected."""
    entry, url = resolve_url(text)
    return adapter_class(entry)(url, queue=queue, variant=variant)


# What builds the same adapter in another process (a producer process, a cluster's node): its
# URL, queue, variant, and the partitions of a Kafka pair's topic.
AdapterSpec = tuple[str, str, str, int | None]


def spec_of(adapter: Adapter) -> AdapterSpec:
    return adapter.url, adapter.queue, adapter.variant.name, getattr(adapter, "partitions", None)


def from_spec(spec: AdapterSpec) -> Adapter:
    url, queue, variant, partitions = spec
    adapter = create(url, queue=queue, variant=variant)
    if partitions is not None:
        adapter.partitions = partitions
    return adapter
