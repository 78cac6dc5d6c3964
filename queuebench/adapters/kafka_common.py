"""What the two plain Kafka client pairs share: the topic, the group, and the broker's own count.

The queue is a topic of one partition, consumed by a consumer group of the same name. Both pairs
prepare, inspect and version the broker through kafka-python's admin client, so the check of the
ledger against the broker is the same code for both; what is measured (producing and consuming)
goes through each pair's own library.

The broker's count: `waiting` = the partition's end offset minus the group's committed offset
(minus the beginning offset while the group has committed nothing). A consumer that dies holds
nothing on a Kafka broker, so nothing is ever `stranded`: what it had not committed is simply
read again by the next member.

Group protocol: both pairs use the classic protocol. kafka-python 3.0 has no other, and under
the KIP-848 `consumer` protocol the session timeout is a broker setting
(`group.consumer.session.timeout.ms`, 45 s by default) that a client cannot shorten, while the
classic protocol takes the client's `session.timeout.ms` within the broker's
`group.min.session.timeout.ms` (6 s) .. `group.max.session.timeout.ms` (30 min).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

import kafka.errors
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient, OffsetSpec
from kafka.errors import GroupIdNotFoundError, KafkaError, TopicAlreadyExistsError

from queuebench.adapters.base import Adapter, Backlog, Variant
from queuebench.errors import BrokerUnreachable, UsageError
from queuebench.redact import redact

# A killed member is evicted when its session times out: 10 s instead of the libraries' 45 s,
# so a reliability run ends in well under a minute. Kafka 4 accepts 6 s .. 30 min.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 3_000  # both libraries' default; a third of the session, as advised
AUTO_COMMIT_INTERVAL_MS = 5_000  # both libraries' default
MAX_POLL_INTERVAL_MS = 300_000  # both libraries' default
# How long one poll may block: `stopping` is seen within this.
POLL_TIMEOUT_SEC = 0.5
# The broker's default `message.max.bytes` (a whole record batch); both producers stop smaller
# records first, so this one is never what a user meets with default settings.
BROKER_MESSAGE_MAX_BYTES = 1_048_588
# Keys are str(seq): up to 8 bytes for the runs queuebench makes (fewer than 10**8 messages).
KEY_ALLOWANCE_BYTES = 8
PREPARE_TIMEOUT_SEC = 30.0

COMMON_CONSUMER_NOTE = (
    "auto offset reset 'earliest' is required by the reliability test, which produces before "
    "the group's first consumer starts (with the libraries' 'latest' a new group would skip "
    "those messages); it only decides where a group with no committed offset starts, and is "
    "not a delivery-guarantee change. Session timeout 10 s so a killed member is evicted fast.")


def group_members(consumer_class: str) -> str:
    """The plain clients' unit of concurrency, as a run's settings describe it."""
    return (f"consumer-group members, one thread and one {consumer_class} each, in each "
            "`queuebench consume` process; a member holds one partition or more, and members "
            "beyond the topic's partitions stand by")


def kafka_variants(consumer_settings: Callable[..., dict[str, object]],
                   default_note: str) -> tuple[Variant, Variant]:
    """The library's auto-commit defaults and the at-least-once commit-after variant.

    Either way a killed member holds its partition until its session times out.
    """
    redelivery_sec = SESSION_TIMEOUT_MS / 1000
    return (
        Variant("default", consumer_settings(auto_commit=True), redelivery_sec=redelivery_sec,
                note=f"{default_note}; {COMMON_CONSUMER_NOTE}"),
        Variant("commit-after", consumer_settings(auto_commit=False),
                redelivery_sec=redelivery_sec,
                note="at-least-once: auto-commit off, a synchronous commit of each message's "
                     "offset after the handler returns; " + COMMON_CONSUMER_NOTE),
    )


def recreate_topic(admin: KafkaAdminClient, topic: str, group: str, timeout: float,
                   partitions: int = 1) -> None:
    """Drop the group's committed offsets and the topic, then create the topic with `partitions`
    partitions (a group member beyond them receives nothing)."""
    deadline = time.monotonic() + timeout
    drop_topic(admin, topic, group, timeout)
    while True:
        try:
            admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}},
                                wait_for_metadata=True)
            return
        except TopicAlreadyExistsError:  # the deletion is still being applied
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def drop_topic(admin: KafkaAdminClient, topic: str, group: str, timeout: float) -> None:
    """Delete the group's committed offsets, then the topic (absent is fine).

    Committed offsets outlive a deleted topic, hence the group first. A broker that has just
    started answers with retriable errors while its group coordinator loads: those are retried.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            outcome = admin.delete_groups([group]).get(group)  # "OK" or an error class name
        except KafkaError as exc:  # kafka-python raises what FindCoordinator answers
            outcome = type(exc).__name__
        if outcome in ("OK", GroupIdNotFoundError.__name__):
            break
        error = getattr(kafka.errors, str(outcome), KafkaError)
        if not getattr(error, "retriable", False) or time.monotonic() > deadline:
            raise KafkaError(f"cannot delete consumer group {group!r}: {outcome} "
                             "(is a consumer still a member?)")
        time.sleep(0.2)
    admin.delete_topics([topic], raise_errors=False)  # absent is fine


def bootstrap_servers(pair_url: str) -> str:
    """`kafka-python+kafka://h1:9092,h2:9092` -> `h1:9092,h2:9092`."""
    servers = pair_url.partition("://")[2].strip("/") or "127.0.0.1:9092"
    if "@" in servers:  # else a password would be printed as part of a server's address
        raise UsageError(f"{redact(pair_url)!r}: a Kafka URL names servers only "
                         "(HOST:PORT,...); Kafka clients take no credentials from it")
    return servers


class KafkaPairBase(Adapter):
    """Topic admin, backlog and broker version for a plain Kafka client pair."""

    broker: ClassVar[str] = "kafka"
    # Of the topic `prepare` creates; the engine sets it from the workload's `partitions`.
    partitions: int = 1

    def __init__(self, url: str, *, queue: str, variant: str = "default") -> None:
        super().__init__(url, queue=queue, variant=variant)
        self.bootstrap = bootstrap_servers(url)
        self._admin: KafkaAdminClient | None = None

    @property
    def group_id(self) -> str:
        return self.queue

    @property
    def topic_partitions(self) -> list[TopicPartition]:
        return [TopicPartition(self.queue, index) for index in range(self.partitions)]

    def _connect_admin(self, timeout: float) -> KafkaAdminClient:
        try:
            return KafkaAdminClient(bootstrap_servers=self.bootstrap,
                                    bootstrap_timeout_ms=int(timeout * 1000),
                                    request_timeout_ms=int(max(timeout, 1.0) * 1000))
        except KafkaError as exc:
            raise BrokerUnreachable(
                f"{self.scheme}: cannot reach Kafka at {self.bootstrap}: {exc}") from None

    @property
    def admin(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = self._connect_admin(PREPARE_TIMEOUT_SEC)
        return self._admin

    def check_reachable(self, timeout: float) -> None:
        self._connect_admin(timeout).close()

    def broker_version(self) -> str | None:
        # Kafka never states its release; kafka-python infers it from the API versions it serves.
        broker_id = self.admin.describe_cluster()["brokers"][0]["broker_id"]
        major, minor, *_ = self.admin.get_broker_version_data(broker_id).broker_version
        return f"Kafka {major}.{minor} (inferred from its API versions)"

    def prepare(self) -> None:
        recreate_topic(self.admin, self.queue, self.group_id, PREPARE_TIMEOUT_SEC,
                       self.partitions)

    def unsettled_group(self, members: int) -> str | None:
        """None once the group is stable with `members` members and every partition assigned.
        Until then a member that took a warm-up message may still lose its partition to one
        joining: a large group rebalances for minutes after its first member is ready."""
        group = self.admin.describe_groups([self.group_id])[self.group_id]
        # A member's assignment is b"" until the group synced; an empty one holds nothing.
        held = {p for m in group["members"] if isinstance(m["member_assignment"], dict)
                for topic in m["member_assignment"]["assigned_partitions"]
                for p in topic["partitions"]}
        if group["group_state"] == "Stable" and len(group["members"]) == members \
                and held == set(range(self.partitions)):
            return None
        return (f"group {group['group_state']}, {len(group['members'])} of {members} members "
                f"in, {len(held)} of {self.partitions} partitions held")

    def backlog(self) -> Backlog:
        """Messages past the group's committed offsets (or, where it committed nothing, past
        the beginning), summed over the topic's partitions."""
        tps = self.topic_partitions
        end = self.admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
        committed = self.admin.list_group_offsets({self.group_id: tps})[self.group_id]
        if all(committed[tp].offset >= 0 for tp in tps):
            waiting = sum(end[tp].offset - committed[tp].offset for tp in tps)
            return Backlog(waiting=waiting, detail=f"end offset {_offsets(end, tps)}, committed "
                           f"offset {_offsets(committed, tps)} (group {self.group_id!r})")
        beginning = self.admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in tps})
        start = {tp: committed[tp] if committed[tp].offset >= 0 else beginning[tp] for tp in tps}
        return Backlog(waiting=sum(end[tp].offset - start[tp].offset for tp in tps),
                       detail=f"end offset {_offsets(end, tps)}, from {_offsets(start, tps)}; "
                              f"group {self.group_id!r} has not committed every partition")

    def delete_queue(self) -> None:
        drop_topic(self.admin, self.queue, self.group_id, PREPARE_TIMEOUT_SEC)

    def cleanup(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None


def _offsets(offsets: dict, tps: list[TopicPartition]) -> str:
    """`12` for one partition, `[12, 7, 9]` for several."""
    values = [offsets[tp].offset for tp in tps]
    return str(values[0]) if len(values) == 1 else str(values)
