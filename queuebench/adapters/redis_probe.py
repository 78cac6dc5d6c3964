"""Reachability and version of a Redis server, for every library that uses Redis as its broker."""

from __future__ import annotations

import redis

from queuebench.errors import BrokerUnreachable
from queuebench.redact import redact

VERSION_TIMEOUT_SEC = 5.0


def _client(redis_url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)


def check_redis(scheme: str, redis_url: str, timeout: float) -> None:
    """Raise BrokerUnreachable, naming the address, unless Redis answers PING within `timeout`."""
    client = _client(redis_url, timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise BrokerUnreachable(f"{scheme}: cannot reach {redact(redis_url)}: {exc}") from None
    finally:
        client.close()


def redis_version(redis_url: str) -> str:
    client = _client(redis_url, VERSION_TIMEOUT_SEC)
    try:
        return "Redis " + str(client.info("server")["redis_version"])
    finally:
        client.close()
