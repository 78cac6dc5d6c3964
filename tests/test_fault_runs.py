"""Faults beyond the consumer through the engine: each shipped fault file is valid, a fault is
injected at its trigger and healed on the timeline, a worker that gives up is started again, and
a fault that means nothing for a pair is "n/a" with its reason."""

from __future__ import annotations

import json

import pytest

from queuebench.engine.workload import cells, load
from tests.test_cli import run_cli


def run(tmp_path, experiment: str, pair: str, *settings: str, variant: str | None = None
        ) -> list[dict]:
    args = ["run", experiment, "--pair", pair, "--reports-dir", str(tmp_path), "--name", "f"]
    args += ["--variant", variant] if variant else []
    for setting in settings:
        args += ["--set", setting]
    # A broker's restart takes seconds, a JVM's more on a busy machine; rows in a sweep add up.
    run_cli(*args, timeout=300)
    [results] = tmp_path.glob("*-f/results.json")
    return json.loads(results.read_text())["results"]


@pytest.mark.parametrize("name, kinds", [
    ("broker-restart", ["broker-stop", "broker-kill"]),
    ("network", ["network-cut", "network-blackhole", "network-latency"]),
    ("consumer-pause", ["consumer-pause", "consumer-pause"])])
def test_each_fault_file_declares_its_faults(name, kinds):
    [(_, workload)] = load(name, [])
    assert [cell.fault.kind for cell in cells(name, workload)] == kinds
    assert all(cell.kind == "faults" for cell in cells(name, workload))


def test_a_paused_worker_is_frozen_then_continued_on_the_timeline(tmp_path):
    """The first of two workers frozen for 1 s once 30% arrived: every message is received, and
    the timeline has the pause between its trigger and the end."""
    [r] = run(tmp_path, "consumer-pause", "sqlalchemy+sqlite", "messages=40", "rate=40",
              "work_ms=0", "faults=[{pause_sec: 1, at_received: 0.3}]")
    m = r["measurements"]
    assert r["status"] == "ok" and r["config"]["fault"] == "consumer-pause 1s"
    assert m["lost"] == 0 and m["fault"]["injected"]
    assert m["fault"]["received_at_injection"] >= 12 and 1 <= m["fault"]["in_force_sec"] < 5
    events = [e["event"] for e in m["timeline"]]
    assert events.index("consumer-pause injected") < events.index("consumer-pause healed")


def test_a_broker_fault_on_an_embedded_pair_is_not_applicable(tmp_path):
    [r] = run(tmp_path, "broker-restart", "sqlalchemy+sqlite", "messages=10",
              "faults=[{broker: kill}]")
    assert r["status"] == "n/a"
    assert "no broker process" in r["measurements"]["not_applicable"]


@pytest.mark.broker("postgres")
@pytest.mark.broker("toxiproxy")
def test_a_network_cut_counts_unacknowledged_sends_apart_from_losses(tmp_path):
    """A 2 s cut between the clients and PostgreSQL: what was lost had not been acknowledged
    (lost_acked 0: the broker dropped nothing it took); a worker that gave up is counted; the
    proxy is whole afterwards."""
    [r] = run(tmp_path, "network", "sqlalchemy+postgres", "messages=100", "rate=50",
              "faults=[{network: cut, at_received: 0.3, for_sec: 2}]")
    m = r["measurements"]
    assert r["status"] == "ok", r.get("error")
    assert m["fault"]["injected"] and m["fault"]["in_force_sec"] >= 2
    assert m["fault"]["consumer_exits"] >= 0
    assert m["lost_acked"] == 0
    assert m["lost"] <= m["send_failed"]
    from queuebench.faults import Toxiproxy
    assert Toxiproxy().call("GET", "/proxies/qb-postgres")["enabled"] is True


@pytest.mark.broker("kafka")
@pytest.mark.broker("toxiproxy")
def test_kafka_clients_stay_behind_the_proxy_so_a_cut_holds_messages_back(tmp_path):
    """Kafka clients connect where the broker advertises: its PROXIED listener keeps them behind
    Toxiproxy, so a 3 s cut holds back what was sent meanwhile (a client that went round the
    proxy would deliver in milliseconds); nothing acknowledged is lost."""
    [r] = run(tmp_path, "network", "confluent-kafka+kafka", "messages=100", "rate=50",
              "payload.records=1", "faults=[{network: cut, at_received: 0.3, for_sec: 3}]",
              variant="commit-after")
    m = r["measurements"]
    assert r["status"] == "ok" and m["fault"]["injected"]
    assert m["latency_ms"]["max"] >= 2000
    assert m["lost_acked"] == 0
