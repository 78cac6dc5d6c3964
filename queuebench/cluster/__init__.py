"""Consumers and producers spread over several hosts, on a Ray cluster (`queuebench run ...
--cluster`).

`--cluster ray://HEAD:10001` joins a running Ray cluster; `--cluster local:N` starts a test
cluster of N simulated nodes on this machine (`ray.cluster_utils.Cluster`), and
`local:N:LABEL=2,3` gives nodes 2 and 3 the custom resource LABEL, as `ray start --resources`
would. Each node gets one `HostAgent` actor (agent.py) holding its consumer processes and, in
producer mode `processes`, its producer processes (producers.py); the ledger and figures stay on
this machine. Only a run given `--cluster` imports this package, and so Ray.

Clocks: each agent's clock offset is measured at connection as Cristian's algorithm does (this
machine's time before and after asking the agent's, the offset taken against the midpoint, from
the sample of shortest round trip). A producer on a node keeps its times, and stamps its
messages, on its clock less that offset; a receipt stamped on a node has it subtracted before it
enters the ledger. So every stamp is on this machine's clock: a skewed clock cannot fake
latency, within the round trip's half.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from queuebench.engine.watchdog import MARK_VARIABLE
from queuebench.errors import MissingExtra, UsageError

LOCAL = re.compile(r"local:(\d+)((?::[A-Za-z_][\w.-]*=\d+(?:,\d+)*)*)")
REMOTE = re.compile(r"ray://[^/\s]+:\d+")
MAX_LOCAL_NODES = 16
CLOCK_SAMPLES = 7
NODE_RESOURCE = "queuebench_node_{}"  # a simulated node's own resource, which pins its agent
AGENT_CALLS = 8
# Resources every Ray node has: the others are labels a user gave (`ray start --resources`).
RAY_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}


@dataclass(frozen=True)
class Node:
    number: int  # from 1, as workloads name nodes (the head first)
    agent: Any  # its HostAgent actor
    info: dict[str, object]  # host, cores, memory, versions (HostAgent.describe)
    labels: frozenset[str]  # the custom Ray resources it carries, for `placement: {label: }`
    clock_offset_ns: int  # its clock minus this machine's
    rtt_ns: int  # the round trip of the sample the offset came from

    def manifest(self) -> dict[str, object]:
        return {"node": self.number, **self.info, "labels": sorted(self.labels),
                "clock_offset_ms": round(self.clock_offset_ns / 1e6, 3),
                "clock_rtt_ms": round(self.rtt_ns / 1e6, 3)}


def check_spec(spec: str) -> str:
    """`spec` if it is local:N or ray://HOST:PORT; a UsageError naming what is wrong if not."""
    local = LOCAL.fullmatch(spec)
    if local and 1 <= int(local[1]) <= MAX_LOCAL_NODES:
        local_labels(spec)
        return spec
    if not local and REMOTE.fullmatch(spec):
        return spec
    raise UsageError(f"--cluster {spec!r}: expected local:N (N from 1 to {MAX_LOCAL_NODES}, "
                     "simulated nodes on this machine; local:N:LABEL=2,3 gives nodes 2 and 3 "
                     "the resource LABEL) or ray://HEAD:PORT (a running Ray cluster's client "
                     "address, e.g. ray://10.0.0.5:10001)")


def local_labels(spec: str) -> list[frozenset[str]]:
    """Each simulated node's labels in a `local:N:LABEL=NODES:...` spec, node 1 first."""
    local = LOCAL.fullmatch(spec)
    assert local is not None
    labels: list[set[str]] = [set() for _ in range(int(local[1]))]
    for part in filter(None, local[2].split(":")):
        label, _, numbers = part.partition("=")
        for number in map(int, numbers.split(",")):
            if not 1 <= number <= len(labels):
                raise UsageError(f"--cluster {spec!r}: label {label} names node {number}, "
                                 f"but there are {len(labels)} nodes")
            labels[number - 1].add(label)
    return [frozenset(node) for node in labels]


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtra("--cluster needs Ray; install it with: pip install "
                           "'queuebench[cluster]'") from None
    return ray


class Cluster:
    """A Ray cluster and an agent on each of its nodes, their clocks measured."""

    def __init__(self, spec: str) -> None:
        self.spec = check_spec(spec)
        ray = _ray()
        from queuebench.cluster.agent import HostAgent

        self._local = self._watchdog = None
        local = LOCAL.fullmatch(spec)
        try:
            if local:
                self._watchdog, mark = _watchdog()
                labels = local_labels(spec)
                self._local, resources = _local_cluster(labels, mark)
                ray.init(address=self._local.address, logging_level=logging.ERROR,
                         log_to_driver=False)
            else:
                ray.init(address=spec, logging_level=logging.ERROR, log_to_driver=False)
                resources, labels = _node_resources(ray.nodes())
        except (ConnectionError, RuntimeError) as exc:
            self.close()
            raise UsageError(f"--cluster {spec}: Ray did not connect ({exc})") from None
        # Several calls at once: receipts are read while producers send, a fault pauses, ...
        agent_class = ray.remote(num_cpus=0, max_concurrency=AGENT_CALLS)(HostAgent)
        agents = [agent_class.options(resources={resource: 0.001}).remote(number)
                  for number, resource in enumerate(resources, 1)]
        infos = ray.get([agent.describe.remote() for agent in agents])
        self.nodes = [Node(number, agent, info, node_labels, *_clock_offset(ray, agent))
                      for number, (agent, info, node_labels)
                      in enumerate(zip(agents, infos, labels, strict=True), 1)]

    @property
    def labels(self) -> list[frozenset[str]]:
        """Each node's labels, node 1 first: what a workload's placement is resolved over."""
        return [node.labels for node in self.nodes]

    def fleet(self, adapter: Any, **settings: Any) -> Any:
        """A consumer fleet whose members run on this cluster's nodes (fleet.py)."""
        from queuebench.cluster.fleet import ClusterFleet

        return ClusterFleet(self, adapter, **settings)

    def produce(self, adapter: Any, sending: Any, messages: int, nodes: list[int]) -> Any:
        """Producer process i on node `nodes[i]` (producers.py)."""
        from queuebench.cluster.producers import produce_on_nodes

        return produce_on_nodes(self, adapter, sending, messages, nodes)

    def memory_per_process(self, nodes: list[int]) -> float:
        """The memory free for each consumer process on the node where it is scarcest, given
        the node of each process (`nodes`)."""
        return min(self.nodes[node - 1].info["memory_available_bytes"] / nodes.count(node)
                   for node in set(nodes))

    def manifest(self) -> dict[str, object]:
        ray = _ray()
        return {"address": self.spec, "engine": f"ray {ray.__version__}",
                "nodes": [node.manifest() for node in self.nodes]}

    def close(self) -> None:
        ray = _ray()
        for node in getattr(self, "nodes", []):
            ray.get(node.agent.forget_all.remote())
        ray.shutdown()
        if self._local is not None:
            self._local.shutdown()
        if self._watchdog is not None:  # EOF: it kills what Ray left, and exits
            self._watchdog.stdin.close()
            self._watchdog.wait()


def _watchdog() -> tuple[subprocess.Popen[bytes], str]:
    """A watchdog that kills every process of a local cluster when this run ends, however it
    ends (engine/watchdog.py); the mark that names them. Ray's own fate-sharing misses some
    (each node's dashboard and runtime-env agents outlive a killed run)."""
    mark = uuid.uuid4().hex
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "queuebench.engine.watchdog", "--marked", mark],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)
    return watchdog, mark


def _local_cluster(labels: list[frozenset[str]], mark: str) -> tuple[Any, list[str]]:
    """A head and more nodes on this machine, one a set of labels, each with a resource of its
    own (they share one IP address, so `node:<ip>` cannot tell them apart) and one for each of
    its labels; every process of theirs carrying `mark` in its environment."""
    from ray.cluster_utils import Cluster as RayCluster

    resources = [NODE_RESOURCE.format(number) for number in range(1, len(labels) + 1)]
    # One CPU each: the agents take none, and Ray starts a worker per CPU it is told of.
    args = [{"num_cpus": 1, "resources": {own: 1} | dict.fromkeys(node_labels, 1)}
            for own, node_labels in zip(resources, labels, strict=True)]
    os.environ[MARK_VARIABLE] = mark  # Ray's processes inherit it, and pass it on
    try:
        cluster = RayCluster(initialize_head=True,
                             head_node_args=args[0] | {"include_dashboard": False})
        for node_args in args[1:]:
            cluster.add_node(**node_args)
    finally:
        del os.environ[MARK_VARIABLE]
    return cluster, resources


def _node_resources(nodes: list[dict[str, Any]]) -> tuple[list[str], list[frozenset[str]]]:
    """Each live node's own `node:<ip>` resource, the head first; and its labels (the custom
    resources it carries)."""
    alive = [node for node in nodes if node.get("Alive")]
    alive.sort(key=lambda node: ("node:__internal_head__" not in node["Resources"],
                                 node["NodeManagerAddress"]))
    return ([f"node:{node['NodeManagerAddress']}" for node in alive],
            [frozenset(name for name in node["Resources"] if name not in RAY_RESOURCES
                       and not name.startswith(("node:", "accelerator_type:")))
             for node in alive])


def _clock_offset(ray: Any, agent: Any) -> tuple[int, int]:
    """(the agent's clock minus ours, the round trip) by Cristian's algorithm: the sample with
    the shortest round trip bounds the error best (by half of it)."""
    samples = []
    for _ in range(CLOCK_SAMPLES):
        before = time.time_ns()
        remote = ray.get(agent.clock_ns.remote())
        after = time.time_ns()
        samples.append((after - before, remote - (before + after) // 2))
    rtt, offset = min(samples)
    return offset, rtt
