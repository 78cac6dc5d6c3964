"""Consumers and producers spread over the nodes of a Ray cluster (`run --cluster`,
queuebench/cluster/).

The real-broker tests run the reliability workload twice, on a local test cluster of three
simulated nodes and on this machine alone, each killing the consumers of node 2 halfway: the
lost and duplicated figures must be the same; and producer processes on the nodes get every
message through. The others run on huey+sqlite (no server): a pause aimed at a node, and a
killed run that must take its cluster with it. Without Ray installed they skip locally with the
command that installs it, and fail in CI, as the `broker` marker does for a missing broker.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from queuebench import adapters
from queuebench.cli import main
from queuebench.cluster import check_spec, local_labels
from queuebench.cluster.fleet import on_our_clock
from queuebench.engine.producers import ProducerProcesses, Sending, merged, shares
from queuebench.engine.workload import cells, load
from queuebench.errors import UsageError
from queuebench.payloads.builder import record_batches
from tests.harness import wait_for
from tests.test_cleanup import command_lines, huey_run_at_work, processes_mentioning
from tests.test_producers import sent_files

THREE = [frozenset()] * 3  # the labels of a cluster of three nodes that carry none


@pytest.fixture
def ray_installed() -> None:
    if importlib.util.find_spec("ray") is None:
        message = "ray is not installed; install it with: pip install 'queuebench[cluster]'"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def reliability_cell(*settings: str):
    return cells(*load("reliability", ["consumers.processes=3", *settings])[0])[0]


def test_receive_stamps_move_onto_the_engines_clock():
    """A node whose clock runs 5 s ahead has 5 s taken off each receive stamp, started lines
    included; the send stamp (the producer's, on the engine's clock) is left as it was."""
    lines = b"run 1 100 5000000200 ok\nrun 2 150 5000000300 started\n"
    assert on_our_clock(lines, 5_000_000_000) == b"run 1 100 200 ok\nrun 2 150 300 started\n"


def test_a_skewed_nodes_producers_stamp_on_the_engines_clock(tmp_path):
    """Producer processes on a node whose clock runs 5 s ahead of the engine's: each message's
    send stamp, and when they finished, are on the engine's clock (their own less 5 s), so that
    latency and time to produce are as if the clocks agreed."""
    skew, messages = 5_000_000_000, 6
    spec = adapters.spec_of(adapters.create(f"stub+dir:///{tmp_path}", queue="q"))
    sending = Sending(uuid.uuid4(), record_batches("sqlite://", 1, messages), "json", None)
    before = time.time_ns() - skew  # now, on the engine's clock
    processes = ProducerProcesses(spec, sending, messages, shares(messages, 2), skew)
    try:
        processes.go(before)
        produced = merged(processes.reports(), messages, before, 2)
    finally:
        processes.close()
    after = time.time_ns() - skew
    stamps = [envelope.sent_ns for *_, envelope in sent_files(tmp_path / "q")]
    assert len(stamps) == messages and all(before <= stamp <= after for stamp in stamps)
    assert 0 <= produced.seconds <= (after - before) / 1e9
    assert produced.acked == [True] * messages
    assert all(0 <= latency <= after - before for latency in produced.ack_latencies_ns)


def test_default_placement_spreads_processes_evenly_over_the_nodes():
    """Without `placement`, process i goes on node i mod N + 1 of the cluster's N nodes."""
    cell = cells(*load("reliability", ["consumers.processes=5"])[0])[0]
    assert cell.nodes_of_processes(THREE) == [1, 2, 3, 1, 2]
    assert cell.nodes_of_processes(None) == [1] * 5  # one machine: one node


def test_placement_per_node_and_its_mistakes_are_usage_errors():
    """per_node counts place processes node by node; counts that do not add up, a node beyond
    the cluster, or a fault aimed at a node without consumers are refused, naming the problem."""
    assert reliability_cell("placement.per_node=[0,1,2]").nodes_of_processes(THREE) == [2, 3, 3]
    with pytest.raises(UsageError, match="places 2 consumer processes but the workload runs 3"):
        reliability_cell("placement.per_node=[1,1]").nodes_of_processes(THREE)
    with pytest.raises(UsageError, match="names node 4 but the cluster has 3 nodes"):
        reliability_cell("placement.nodes=4").nodes_of_processes(THREE)
    with pytest.raises(UsageError, match="targets node 3, which the placement leaves"):
        reliability_cell("placement.per_node=[2,1]",
                         "faults=[{consumer: kill, node: 3}]").nodes_of_processes(THREE)


def test_producer_processes_are_placed_as_consumers_are():
    """producers.placement places producer processes (default: spread over every node), and
    refuses what cannot be, naming the key."""
    cell = reliability_cell("producers={mode: processes, count: 4}")
    assert cell.nodes_of_producers(THREE) == [1, 2, 3, 1]
    assert cell.nodes_of_producers(None) == [1] * 4
    assert reliability_cell("producers={mode: processes, count: 4, placement: {nodes: 2}}"
                            ).nodes_of_producers(THREE) == [1, 2, 1, 2]
    with pytest.raises(UsageError, match=r"producers\.placement\.per_node places 1 producer "
                                         "processes but the workload runs 2"):
        reliability_cell("producers={mode: processes, count: 2, placement: {per_node: [1]}}"
                         ).nodes_of_producers(THREE)


def test_placement_by_label_spreads_over_the_nodes_that_carry_it():
    """`placement: {label: L}` spreads the processes over the nodes whose Ray resources include
    L, as local:N:L=2,3 gives them; a label no node carries, or a spec naming a node beyond N,
    is refused; on one machine a label means node 1."""
    labels = local_labels("local:4:consumers=2,4:producers=1")
    assert labels == [{"producers"}, {"consumers"}, set(), {"consumers"}]
    by_label = reliability_cell("placement.label=consumers",
                                "producers={mode: processes, count: 2, "
                                "placement: {label: producers}}")
    assert by_label.nodes_of_processes(labels) == [2, 4, 2]
    assert by_label.nodes_of_producers(labels) == [1, 1]
    assert by_label.nodes_of_processes(None) == [1, 1, 1]
    with pytest.raises(UsageError, match="no node of the cluster carries the resource 'gpu'"):
        reliability_cell("placement.label=gpu").nodes_of_processes(labels)
    with pytest.raises(UsageError, match="label consumers names node 5, but there are 4 nodes"):
        check_spec("local:4:consumers=5")
    with pytest.raises(UsageError, match="targets node 3, which the placement leaves"):
        reliability_cell("placement.label=consumers",
                         "faults=[{consumer: kill, node: 3}]").nodes_of_processes(labels)


@pytest.mark.parametrize("spec", ["local:0", "local:x", "ray://", "10.0.0.5:10001",
                                  "local:2:consumers", "local:2:=1", "local:2:consumers=3"])
def test_a_bad_cluster_address_is_one_line_and_exit_2(spec, capsys):
    """--cluster takes local:N or ray://HEAD:PORT; anything else is a usage error, before Ray."""
    assert main(["run", "reliability", "--cluster", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--cluster" in err and "Traceback" not in err
    with pytest.raises(UsageError):
        check_spec(spec)


def test_a_run_without_cluster_never_imports_ray(tmp_path):
    """Ray is an optional extra: a run without --cluster (a real one, on the stub pair) does
    not import it, as `python -X importtime` lists every module a process imported."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "queuebench", "run", "throughput",
         "--pair", f"stub+dir:///{tmp_path / 'queues'}", "--messages", "5", "--repeats", "1",
         "--reports-dir", str(tmp_path / "reports")],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")]
    assert "queuebench.engine.phases" in imported  # the run ran
    assert not [name for name in imported
                if name == "ray" or name.startswith(("ray.", "queuebench.cluster"))]


def lost_and_duplicated(reports: Path, *cluster: str) -> tuple[int, int, dict]:
    """The reliability workload on rq+redis, three consumer processes, node 2's killed
    mid-task once half the messages arrived; (lost, duplicates, measurements)."""
    code = main(["run", "reliability", "--pair", "rq+redis", "--variant", "default",
                 "--stop", "kill", "--messages", "12", "--work-ms", "300", "--wait", "1",
                 "--set", "consumers.processes=3", "--set", "placement.nodes=3",
                 "--set", "faults=[{consumer: kill, node: 2}]", "--reports-dir", str(reports),
                 *cluster])
    assert code == 0
    document = json.loads((reports / "latest" / "results.json").read_text())
    m = document["results"][0]["measurements"]
    return m["lost"], m["duplicates"], {**m, "environment": document["environment"]}


@pytest.mark.slow
@pytest.mark.broker("redis")
def test_killing_one_nodes_consumers_loses_what_it_loses_on_one_machine(ray_installed,
                                                                        tmp_path):
    """On a local cluster of 3 nodes, one consumer process each, killing node 2's consumers
    mid-task loses and repeats exactly what killing the same process does on one machine (RQ's
    worker loses the job in hand: LOSES_ON_KILL); the manifest lists the nodes, their clock
    offsets, and where each consumer ran."""
    lost, duplicated, m = lost_and_duplicated(tmp_path / "cluster", "--cluster", "local:3")
    assert (lost, duplicated) == (1, 0), m
    assert lost_and_duplicated(tmp_path / "alone")[:2] == (lost, duplicated)
    assert [c["node"] for c in m["consumer_nodes"]] == [1, 2, 3]
    assert "consumers killed on node 2" in json.dumps(m["timeline"])
    nodes = m["environment"]["cluster"]["nodes"]
    assert [node["node"] for node in nodes] == [1, 2, 3]
    assert all(node["clock_rtt_ms"] > 0 and "cores" in node for node in nodes)


@pytest.mark.slow
def test_a_killed_run_takes_its_local_cluster_with_it(ray_installed, tmp_path):
    """SIGKILL on a run with --cluster local:2, its consumers at work: within seconds nothing
    of it is left, neither Ray's processes (servers, raylets, agents, workers) nor the
    consumers they started, nor their watchdogs."""
    with huey_run_at_work(tmp_path, "--set", "consumers.processes=2", "--cluster", "local:2",
                          timeout=240) as run:
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes()
                    for pid in processes_mentioning(str(tmp_path))]
        assert any(b"raylet" in command for command in commands)  # found by the mark: Ray's
        assert sum(b"huey_consumer" in command for command in commands) == 2  # and ours
        run.send_signal(signal.SIGKILL)
        run.wait()
        # Before the watchdog followed the family, not just the mark, Ray's dashboard and
        # runtime-env agents outlived the run 1 time in 2 on a busy machine.
        wait_for(lambda: not processes_mentioning(str(tmp_path)),
                 "the killed run's cluster to be gone", timeout=30, poll=0.2,
                 detail=lambda: f"left: {command_lines(processes_mentioning(str(tmp_path)))}")


@pytest.mark.slow
def test_pausing_one_nodes_consumers_leaves_the_others_at_work(ray_installed, tmp_path):
    """`{pause_sec: 3, node: 3}` on local:3, one consumer a node: node 3's consumer writes no
    receipt while frozen, the other nodes' go on receiving meanwhile, and once it is continued
    every message arrives."""
    reports = tmp_path / "reports"
    code = main(["run", "throughput", "--pair", f"huey+sqlite:///{tmp_path}/huey.sqlite",
                 "--variant", "default", "--messages", "150", "--work-ms", "100", "--repeats", "1",
                 "--set", "consumers.processes=3",
                 "--set", "faults=[{pause_sec: 3, node: 3, at_received: 0.3}]",
                 "--reports-dir", str(reports), "--cluster", "local:3"])
    assert code == 0
    m = json.loads((reports / "latest" / "results.json").read_text())["results"][0][
        "measurements"]
    assert (m["successful"], m["lost"]) == (150, 0), m
    assert "consumer-pause injected" in json.dumps(m["timeline"])
    stamps: dict[int, list[int]] = {1: [], 2: [], 3: []}  # each node's receive stamps
    for path in reports.glob("latest/experiments/*/ledger/receipts-node*.log"):  # one repeat's
        node = int(path.name.split("-")[1].removeprefix("node"))
        stamps[node] += [int(line.split()[3]) for line in path.read_text().splitlines()]
    node3 = sorted(stamps[3])
    silent_from, silent_to = max(itertools.pairwise(node3), key=lambda gap: gap[1] - gap[0])
    meanwhile = sum(silent_from < stamp < silent_to for stamp in stamps[1] + stamps[2])
    # Two consumers at 100 ms a message receive about 60 in 3 s; in one of node 3's ordinary
    # gaps between messages, one or two.
    assert meanwhile >= 20, (meanwhile, len(node3))


@pytest.mark.slow
@pytest.mark.broker("redis")
def test_producer_processes_on_the_nodes_get_every_message_through(ray_installed, tmp_path):
    """producers: {mode: processes, count: 3} on local:3 puts one producer process on each
    node (the default spread): every message is sent, acknowledged and received once, and the
    results say where each producer ran."""
    reports = tmp_path / "reports"
    code = main(["run", "throughput", "--pair", "rq+redis", "--variant", "default",
                 "--messages", "60", "--repeats", "1", "--set", "consumers.processes=3",
                 "--set", "producers={mode: processes, count: 3}",
                 "--reports-dir", str(reports), "--cluster", "local:3"])
    assert code == 0
    m = json.loads((reports / "latest" / "results.json").read_text())["results"][0][
        "measurements"]
    assert (m["successful"], m["lost"], m["duplicates"]) == (60, 0, 0), m
    assert (m["producers"], m["send_acked"], m["producer_nodes"]) == (3, 60, [1, 2, 3])
    assert m["latency_ms"]["p50"] > 0
