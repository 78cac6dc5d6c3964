"""Broker durability: the server settings that decide whether a queued message survives the
broker's crash, as named modes. A workload sweeps them with `durability: each`; every run records
the mode in force, read from the live server where it can be switched.

Redis and PostgreSQL switch live (CONFIG SET; ALTER SYSTEM and a reload), and keep the mode
across the restarts a fault makes (Redis reads it back from its data folder at launch); ElasticMQ
is restarted with its storage configured (in memory, or an H2 database). RabbitMQ and Kafka have
one mode here: RabbitMQ's queue durability and message persistence are declared by the library,
Kafka's single broker has nothing to replicate to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from queuebench.errors import QueuebenchError


@dataclass(frozen=True)
class Durability:
    mode: str
    settings: dict[str, str]  # the server settings, as the server names them
    words: str  # what the mode means for a message still queued when the broker dies

    def to_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "settings": self.settings, "words": self.words}


def _redis(mode: str, words: str, **settings: str) -> Durability:
    return Durability(mode, {"appendonly": "no", "appendfsync": "everysec", "save": "",
                             **settings}, words)


# Per service, its modes; the first is the one the project's service runs with.
MODES: dict[str, tuple[Durability, ...]] = {
    "redis": (
        _redis("none", "Redis without persistence: a restart, graceful or not, starts empty, "
                       "so every message still queued is lost"),
        # Redis's own default schedule, as a stock redis.conf has it
        _redis("rdb", "Redis with RDB snapshots on its default schedule (after 3600 s if a key "
                      "changed, 300 s if 100, 60 s if 10,000): a crash loses what changed since "
                      "the last snapshot; a graceful shutdown saves one first",
               save="3600 1 300 100 60 10000"),
        # Redis's flushAppendOnlyFile postpones the write (not the reply) while the last
        # second's fsync still runs, so a crash on a busy disk can lose acknowledged writes.
        _redis("aof-everysec", "Redis with the append-only file, fsync every second: each "
                               "write reaches the file (the page cache) before the reply, "
                               "unless the last fsync is still running on a busy disk: then "
                               "Redis replies and holds the write back up to 2 s, which a "
                               "crash loses; a power loss may lose the last second",
               appendonly="yes"),
        _redis("aof-always", "Redis with the append-only file, fsync before each reply: "
                             "nothing acknowledged is lost, a crash or a power loss",
               appendonly="yes", appendfsync="always"),
    ),
    "postgres": (
        Durability("sync-commit", {"synchronous_commit": "on"},
                   "PostgreSQL with synchronous_commit on: a commit returns once its WAL is "
                   "flushed to disk"),
        Durability("async-commit", {"synchronous_commit": "off"},
                   "PostgreSQL with synchronous_commit off: a commit returns before its WAL is "
                   "flushed; a crash of the server may lose the last commits (up to three "
                   "times wal_writer_delay, 600 ms)"),
    ),
    "rabbitmq": (
        Durability("as-declared", {"queue_type": "classic"},
                   "RabbitMQ with classic queues: a durable queue's persistent messages "
                   "(delivery_mode 2) survive a restart, transient ones do not; both are the "
                   "library's to declare"),
    ),
    "kafka": (
        Durability("single-broker", {"replication.factor": "1",
                                     "log.flush.interval.messages": "unlimited (the OS flushes)"},
                   "Kafka on one broker: no replica to fail over to, the log is written to the "
                   "page cache and flushed by the OS; what a send waits for is the producer's "
                   "acks"),
    ),
    "elasticmq": (
        Durability("in-memory", {"messages-storage": "off", "queues-storage": "off"},
                   "ElasticMQ keeping queues and messages in memory: a restart loses every "
                   "queue, and every message in it"),
        Durability("h2", {"messages-storage": "H2 database", "queues-storage": "file"},
                   "ElasticMQ keeping messages in an H2 database and its queues in a file: both "
                   "are read back at a restart, but H2 writes on its own schedule, so a crash "
                   "may lose the last writes"),
    ),
}


def modes(service_name: str | None) -> tuple[Durability, ...]:
    return MODES.get(service_name or "", ())


def find(service_name: str, mode: str) -> Durability:
    for durability in modes(service_name):
        if durability.mode == mode:
            return durability
    known = ", ".join(d.mode for d in modes(service_name)) or "none"
    raise QueuebenchError(f"{service_name} has no durability mode {mode!r} (it has: {known})")


def switchable(service_name: str | None) -> bool:
    return len(modes(service_name)) > 1


def apply(service_name: str, mode: str) -> Durability:
    """Switch the running broker to `mode`, and keep it across its restarts."""
    durability = find(service_name, mode)
    if service_name == "redis":
        _apply_redis(durability)
    elif service_name == "postgres":
        _apply_postgres(durability)
    elif service_name == "elasticmq":
        _apply_elasticmq(durability)
    return durability


def reset(service_name: str) -> Durability:
    """Back to the mode the project's service runs with."""
    return apply(service_name, modes(service_name)[0].mode)


def in_force(service_name: str) -> Durability:
    """The mode the running broker is in, read from the server where it can be switched."""
    if service_name == "redis":
        with _redis_client() as client:
            live = client.config_get("*")
        return _matching(service_name, {key: live[key] for key in modes("redis")[0].settings})
    if service_name == "postgres":
        return _matching(service_name, {"synchronous_commit": _postgres_setting()})
    if service_name == "elasticmq":  # no API tells: the mode its running server was launched in
        from queuebench.services import service

        return find("elasticmq", launched_mode(service("elasticmq").dir))
    return modes(service_name)[0]


def _matching(service_name: str, live: dict[str, str]) -> Durability:
    for durability in modes(service_name):
        if all(live.get(key) == value for key, value in durability.settings.items()):
            return durability
    return Durability("custom", live, f"{service_name} with settings queuebench does not name")


def chosen_mode(service_name: str, data_dir: Path) -> str:
    """The mode last applied, kept in the service's data folder for its next launch."""
    path = data_dir / "durability"
    return path.read_text().strip() if path.is_file() else modes(service_name)[0].mode


def _choose(service_name: str, durability: Durability) -> Path:
    from queuebench.services import service

    data_dir = service(service_name).dir
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "durability").write_text(durability.mode)
    return data_dir


def redis_launch_settings(data_dir: Path) -> dict[str, str]:
    """The settings Redis starts with: the mode last applied."""
    return find("redis", chosen_mode("redis", data_dir)).settings


# ElasticMQ's configuration of each mode; the first line names the mode for `launched_mode`.
ELASTICMQ_MODE_LINE = "# queuebench durability: "


def elasticmq_storage(data_dir: Path) -> str:
    """The storage part of ElasticMQ's configuration, in the mode last applied."""
    mode = chosen_mode("elasticmq", data_dir)
    storage = "" if mode == "in-memory" else (
        f'messages-storage {{ enabled = true, uri = "jdbc:h2:{data_dir}/elasticmq-h2" }}\n'
        f'queues-storage {{ enabled = true, path = "{data_dir}/queues.conf" }}\n')
    return f"{ELASTICMQ_MODE_LINE}{find('elasticmq', mode).mode}\n{storage}"


def launched_mode(data_dir: Path) -> str:
    config = data_dir / "elasticmq.conf"
    lines = config.read_text().splitlines() if config.is_file() else []
    return next((line.removeprefix(ELASTICMQ_MODE_LINE) for line in lines
                 if line.startswith(ELASTICMQ_MODE_LINE)), modes("elasticmq")[0].mode)


def _apply_elasticmq(durability: Durability) -> None:
    """ElasticMQ reads its storage at launch only: restarted when the mode changes."""
    from queuebench.services import service

    data_dir = _choose("elasticmq", durability)
    elasticmq = service("elasticmq")
    if launched_mode(data_dir) != durability.mode and elasticmq.pid() is not None:
        # What an earlier h2 run stored must not come back as this one's queues.
        for stored in [*data_dir.glob("elasticmq-h2*"), data_dir / "queues.conf"]:
            stored.unlink(missing_ok=True)
        elasticmq.restart()


def _redis_client():
    import redis

    from queuebench.services import service

    return redis.Redis.from_url(service("redis").url, socket_timeout=10)


def _apply_redis(durability: Durability) -> None:
    data_dir = _choose("redis", durability)
    with _redis_client() as client:
        for key, value in durability.settings.items():
            client.config_set(key, value)
        # Turning the append-only file on rewrites it in a forked child, which inherits the
        # listening socket: a stop or kill meanwhile would leave the port held by it.
        for _ in range(600):
            info = client.info("persistence")
            if not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]):
                break
            time.sleep(0.05)
        else:
            raise QueuebenchError("Redis did not finish rewriting its append-only file in 30 s")
    if durability.mode == "none":
        # What an earlier mode wrote must not come back at the next launch.
        (data_dir / "dump.rdb").unlink(missing_ok=True)


def _postgres_connection():
    import psycopg

    from queuebench.services import service

    return psycopg.connect(service("postgres").url, autocommit=True, connect_timeout=10)


def _postgres_setting() -> str:
    with _postgres_connection() as connection:
        return connection.execute("SHOW synchronous_commit").fetchone()[0]


def _apply_postgres(durability: Durability) -> None:
    wanted = durability.settings["synchronous_commit"]
    with _postgres_connection() as connection:
        # ALTER SYSTEM outlives restarts (postgresql.auto.conf); it takes no bind parameters.
        connection.execute(f"ALTER SYSTEM SET synchronous_commit = {wanted}")
        connection.execute("SELECT pg_reload_conf()")
    # The reload is a signal the server handles in its own time: new sessions see it after.
    for _ in range(100):
        if _postgres_setting() == wanted:
            return
        time.sleep(0.05)
    raise QueuebenchError(f"PostgreSQL did not take synchronous_commit = {wanted} within 5 s")
