"""Fixtures shared by the suite.

Tests marked `broker("name")` need a real broker started by `make services-up`. Locally a test
whose broker is down is skipped with the command that starts it; in CI (CI=true) it fails, so a
missing install step can never hide behind a skip.

A test not marked `broker` must not reach a broker at all: it would pass or fail by whether one
happens to run. The guard below refuses, and fails the test for, any connection it makes from
this process to a broker port on the loopback. Subprocesses and C clients (librdkafka, libpq)
are beyond it; `unshare -n` (a network namespace with nothing listening) covers those.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from queuebench.adapters.base import Adapter
from tests.harness import PairRun

BROKER_PORTS = {"redis": 6379, "rabbitmq": 5672, "postgres": 5432, "kafka": 9092,
                "elasticmq": 9324, "toxiproxy": 8474}


def broker_answers(name: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", BROKER_PORTS[name]), timeout=1):
            return True
    except OSError:
        return False


# Every port a broker of ours listens on: Kafka's controller (9093) too.
GUARDED_PORTS = frozenset({*BROKER_PORTS.values(), 9093})
BLOCKED_CONNECTIONS = pytest.StashKey[list[tuple]]()


class BrokerConnectionBlocked(ConnectionRefusedError):
    """A test not marked `broker` tried to connect to a broker port."""


def _is_broker_address(address: object) -> bool:
    if not (isinstance(address, tuple) and len(address) >= 2 and address[1] in GUARDED_PORTS):
        return False
    try:
        ip = ipaddress.ip_address(address[0])
    except ValueError:
        return address[0] == "localhost"
    return ip.is_loopback or ip.is_unspecified  # 0.0.0.0 reaches the local host too


@pytest.fixture(autouse=True)
def _no_broker_unless_marked(request, monkeypatch):
    """Unless the test is marked `broker`, refuse its connections to broker ports.

    Patching socket.connect covers socket.create_connection, asyncio and every pure-Python client
    (they all end in it). A refusal is recorded too, because clients turn it into "broker down"
    and carry on: pytest_runtest_call fails the test for it after the call.
    """
    if request.node.get_closest_marker("broker"):
        return
    blocked = request.node.stash.setdefault(BLOCKED_CONNECTIONS, [])

    def guard(connect, refused):
        @functools.wraps(connect)
        def guarded(sock, address, *args):
            if _is_broker_address(address):
                blocked.append(address)
                return refused(address)
            return connect(sock, address, *args)
        return guarded

    def refuse(address):
        raise BrokerConnectionBlocked(errno.ECONNREFUSED, f"test not marked broker connects to "
                                      f"{address[0]}:{address[1]}")

    monkeypatch.setattr(socket.socket, "connect", guard(socket.socket.connect, refuse))
    monkeypatch.setattr(socket.socket, "connect_ex",
                        guard(socket.socket.connect_ex, lambda _: errno.ECONNREFUSED))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield
    if blocked := item.stash.get(BLOCKED_CONNECTIONS, None):
        addresses = ", ".join(sorted({f"{a[0]}:{a[1]}" for a in blocked}))
        pytest.fail(f"{item.nodeid} is not marked broker but connected to {addresses}; mark it "
                    "@pytest.mark.broker(...) or keep it off the brokers", pytrace=False)
    return result


def _kafka_python_io_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("kafka-io-")}


@pytest.fixture(autouse=True)
def _no_kafka_python_client_left_open():
    """A kafka-python 3 client not closed keeps its I/O thread refreshing metadata, and a later
    test unmarked `broker` failed for that thread's connection (CI, stop 20); so the test that
    leaves one open fails, after its own fixtures' teardown."""
    before = _kafka_python_io_threads()
    yield
    if left := _kafka_python_io_threads() - before:
        pytest.fail(f"{len(left)} kafka-python client(s) left open (threads "
                    f"{', '.join(sorted(t.name for t in left))}); close them", pytrace=False)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("broker"):
        name = marker.args[0]
        if broker_answers(name):
            continue
        message = f"{name} is not running; start it with: make services-up"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _state_in_tmp(tmp_path, monkeypatch):
    """Relative default paths (.state/...) land in the test's own folder."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def pair_runs(tmp_path: Path) -> Iterator[Callable[..., PairRun]]:
    """Makes PairRuns (or runs of a subclass, `cls`), each in a folder of its own; closes them all
    at teardown."""
    runs: list[PairRun] = []

    def make(adapter: Adapter, *, work_ms: float = 0.0, cls: type[PairRun] = PairRun) -> PairRun:
        runs.append(cls(adapter, tmp_path / f"run{len(runs)}", work_ms=work_ms))
        return runs[-1]

    yield make
    for run in runs:
        run.close()
