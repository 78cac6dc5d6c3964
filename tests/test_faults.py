"""Faults beyond the consumer, each against the real thing it breaks: Toxiproxy between a client
and a TCP server, SIGSTOP on real processes, the project's own brokers stopped and killed. And
the healer: a run that dies with a fault in force leaves nothing broken."""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from queuebench.faults import BrokerFault, NetworkFault, PauseFault, Toxiproxy, proxied_url
from queuebench.faults.base import HealOrder
from queuebench.faults.healer import Healer
from queuebench.services import service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo_proxy():
    """An echo server, and a Toxiproxy proxy in front of it: (toxiproxy, proxy name, port)."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    toxiproxy, name = Toxiproxy(), f"qb-test-{uuid.uuid4().hex[:8]}"
    port = toxiproxy.proxy(name, server.server_address[1], port=free_port())
    yield toxiproxy, name, port
    toxiproxy.call("DELETE", f"/proxies/{name}")
    server.shutdown()


def round_trip(port: int, timeout: float = 2.0) -> float:
    """Seconds for 5 bytes to go through the proxy and back."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(b"hello")
        assert conn.recv(5) == b"hello"
    return time.monotonic() - started


def test_a_pair_url_goes_through_the_proxy_with_its_credentials_kept():
    assert (proxied_url("celery+amqp://guest:s3cret@127.0.0.1:5672//", 25672)
            == "celery+amqp://guest:s3cret@127.0.0.1:25672//")
    assert proxied_url("rq+redis://127.0.0.1:6379/0", 27379) == "rq+redis://127.0.0.1:27379/0"


@pytest.mark.broker("toxiproxy")
def test_a_cut_closes_the_connection_and_refuses_new_ones_until_healed(echo_proxy):
    toxiproxy, name, port = echo_proxy
    round_trip(port)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as open_before:
        fault = NetworkFault(toxiproxy, name, "cut")
        fault.inject()
        open_before.sendall(b"x")
        assert open_before.recv(1) == b""  # closed under the client
    with pytest.raises(OSError):
        round_trip(port)
    fault.heal()
    round_trip(port)


@pytest.mark.broker("toxiproxy")
def test_a_blackhole_drops_data_without_a_reset(echo_proxy):
    """The connection stays open and nothing comes back: the client learns only by timing out."""
    toxiproxy, name, port = echo_proxy
    fault = NetworkFault(toxiproxy, name, "blackhole")
    fault.inject()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(b"hello")
            with pytest.raises(TimeoutError):
                conn.recv(5)
    finally:
        fault.heal()
    round_trip(port)


@pytest.mark.broker("toxiproxy")
def test_latency_adds_its_milliseconds_each_way(echo_proxy):
    toxiproxy, name, port = echo_proxy
    fault = NetworkFault(toxiproxy, name, "latency", latency_ms=150)
    fault.inject()
    try:
        assert round_trip(port) >= 0.3  # 150 ms up and 150 ms down, at least
    finally:
        fault.heal()
    assert toxiproxy.call("GET", f"/proxies/{name}/toxics") == []


def sleepers() -> subprocess.Popen:
    """A session of three processes: a shell (the worker) and two sleeping children."""
    return subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & wait"], start_new_session=True)


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_a_pause_freezes_every_process_of_the_session_until_healed():
    leader = sleepers()
    try:
        time.sleep(0.3)
        fault = PauseFault([leader.pid])
        assert len(fault.heal_order().paused) == 3
        fault.inject()
        assert {state(pid) for pid in fault.paused} == {"T"}
        frozen = list(fault.paused)
        fault.heal()
        assert "T" not in {state(pid) for pid in frozen}
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_the_healer_continues_a_frozen_session_when_the_run_dies(tmp_path):
    """A run that dies (SIGKILL) with a pause in force: its healer continues the processes."""
    leader = sleepers()
    try:
        time.sleep(0.3)
        run = subprocess.Popen([sys.executable, "-c", f"""
import time
from pathlib import Path
from queuebench.faults import PauseFault
from queuebench.faults.healer import Healer
healer = Healer(Path({str(tmp_path / "heal.json")!r}), Path({str(tmp_path / "healer.log")!r}))
fault = PauseFault([{leader.pid}])
healer.expect(fault.heal_order())
fault.inject()
print("paused", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
        assert run.stdout.readline().strip() == "paused"
        assert state(leader.pid) == "T"
        run.kill()
        run.wait()
        deadline = time.monotonic() + 10
        while state(leader.pid) == "T" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state(leader.pid) != "T"
        assert "continued pid" in (tmp_path / "healer.log").read_text()
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_a_healer_whose_run_healed_everything_does_nothing(tmp_path):
    healer = Healer(tmp_path / "heal.json", tmp_path / "healer.log")
    healer.expect(HealOrder(paused=[2**22 + 12345]))
    healer.healed()
    healer.close()
    assert "healer" not in (tmp_path / "healer.log").read_text()


@pytest.mark.broker("redis")
@pytest.mark.parametrize("mode", ["stop", "kill"])
def test_a_broker_stopped_or_killed_comes_back_through_the_service_manager(mode):
    redis = service("redis")
    before = redis.pid()
    fault = BrokerFault("redis", mode)
    fault.inject()
    assert redis.pid() is None and redis.status().state != "healthy"
    fault.heal()
    assert redis.healthy() and redis.pid() not in (None, before)


def test_no_proxy_port_is_a_port_some_service_binds():
    """A proxy at a broker's port + PROXY_PORT_OFFSET must not land on any port a service
    binds (20000 put RabbitMQ's proxy on its Erlang distribution port, 25672)."""
    from queuebench.services.catalog import PROXY_PORT_OFFSET, SERVICES

    bound = {port for spec in SERVICES.values() for port in spec.ports}
    proxied = {spec.port + PROXY_PORT_OFFSET for spec in SERVICES.values()}
    kafka_listener = SERVICES["kafka"].other_ports[1] + PROXY_PORT_OFFSET
    assert not (proxied | {kafka_listener}) & bound
    assert max(proxied | {kafka_listener}) < 32768  # Linux's ephemeral ports start there
