"""A consumer fleet whose members run on the nodes of a cluster, behind the same interface as
`ConsumerFleet` (engine/consumer.py), so that the phases run unchanged.

Each node's members are a ConsumerFleet held by that node's agent. A thread here copies the
receipts they write into the engine's ledger folder (`receipts-node<N>-<SESSION>.log`), each
receive stamp moved onto this machine's clock by the node's measured offset: the ledger reader
and every figure after it cannot tell the files came from elsewhere.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from queuebench.adapters import spec_of
from queuebench.adapters.base import Adapter
from queuebench.engine.consumer import DEFAULT_STOP_TIMEOUT_SEC, MEMORY_SAMPLE_SEC
from queuebench.errors import ConsumerFailed
from queuebench.faults.base import HealOrder

if TYPE_CHECKING:
    from queuebench.cluster import Cluster, Node

COPY_EVERY_SEC = 0.05  # as often as the engine polls its ledger


class ClusterFleet:
    """`count` consumer processes of one pair, process i on node `nodes[i]`."""

    def __init__(self, cluster: Cluster, adapter: Adapter, *, count: int, nodes: list[int],
                 ledger_dir: Path, log_path: Path, **member_settings: Any) -> None:
        import ray

        self._ray = ray
        self.cluster, self.nodes = cluster, nodes
        self.ledger_dir, self.log_path = ledger_dir, log_path
        self.key = uuid.uuid4().hex
        self.hosts = {node.number: node for node in cluster.nodes if node.number in nodes}
        self._get([node.agent.create.remote(self.key, spec_of(adapter),
                                            nodes.count(node.number), member_settings)
                    for node in self.hosts.values()])
        self._sessions: dict[int, list[int]] = {}  # the running sessions of each node
        # (node, its receipts file): (bytes copied, the torn line at their end)
        self._copied: dict[tuple[int, str], tuple[int, bytes]] = {}
        self._copying: threading.Event | None = None
        self._copy_lock = threading.Lock()
        self.peak_rss_bytes = 0  # the fleet's sum over its nodes, sampled while it ran
        self.starts = 0

    def _get(self, refs: list[Any]) -> list[Any]:
        return self._ray.get(refs)

    def _on(self, node: int | None) -> list[Node]:
        return [host for number, host in self.hosts.items() if node in (None, number)]

    def start(self) -> None:
        """Start every member not running (after a stop aimed at one node: that node's)."""
        hosts = self._on(None)
        started = self._get([host.agent.start.remote(self.key) for host in hosts])
        self._sessions = {host.number: ids for host, (ids, _) in zip(hosts, started, strict=True)}
        self.starts = started[0][1]  # the first member's, as ConsumerFleet counts
        if self._copying is None:
            self._copying = threading.Event()
            threading.Thread(target=self._copy_often, args=(self._copying,), daemon=True,
                             name="cluster-receipts").start()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_SEC, *, node: int | None = None
             ) -> float:
        """Every member of `node` (None: all) asked to stop at once; the seconds taken."""
        started = time.monotonic()
        hosts = self._on(node)
        errors = self._get([host.agent.stop.remote(self.key, timeout) for host in hosts])
        self._forget_sessions(hosts)
        if error := next(filter(None, errors), None):
            raise ConsumerFailed(error)
        return time.monotonic() - started

    def kill(self, *, node: int | None = None) -> None:
        hosts = self._on(node)
        self._get([host.agent.kill.remote(self.key) for host in hosts])
        self._forget_sessions(hosts)

    def _forget_sessions(self, hosts: list[Node]) -> None:
        for host in hosts:
            self._sessions[host.number] = []

    def check_alive(self) -> None:
        hosts = self._on(None)
        errors = self._get([host.agent.check_alive.remote(self.key) for host in hosts])
        for host, error in zip(hosts, errors, strict=True):
            if error:
                raise ConsumerFailed(f"on node {host.number} ({host.info['host']}): {error}")

    def revive(self) -> list[int]:
        codes = self._get([host.agent.revive.remote(self.key) for host in self._on(None)])
        return [code for node_codes in codes for code in node_codes]

    def pause_fault(self, node: int | None) -> NodePause:
        """The pause fault: every consumer on `node` frozen (no node: the first node's)."""
        return NodePause(self, self._on(node or self.nodes[0]))

    def ensure_stopped(self) -> None:
        """Every member stopped, its last receipts copied, its host's files deleted."""
        self._get([host.agent.ensure_stopped.remote(self.key) for host in self._on(None)])
        if self._copying is not None:
            self._copying.set()
            self._copying = None
        self.copy_receipts()
        logs = self._get([host.agent.forget.remote(self.key) for host in self._on(None)])
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            for host, text in zip(self._on(None), logs, strict=True):
                if text:
                        log.write(f"=== node {host.number} ({host.info['host']})\n".encode() + text)

    def log_tail(self) -> str:
        return " | ".join(f"node {host.number}: {tail}" for host, tail in zip(
            self._on(None), self._get([host.agent.log_tail.remote(self.key)
                                       for host in self._on(None)]), strict=True))

    def receipt_paths(self) -> list[Path]:
        """Each running member's receipts file as copied into the engine's ledger folder."""
        return [self.ledger_dir / local_name(number, f"receipts-{session}.log")
                for number, sessions in self._sessions.items() for session in sessions]

    def placement(self) -> list[dict[str, object]]:
        return [{"node": node, "host": self.hosts[node].info["host"]} for node in self.nodes]

    def memory_bytes(self, *, proportional: bool = False) -> int:
        return sum(self._get([host.agent.memory_bytes.remote(self.key, proportional)
                              for host in self._on(None)]))

    def sample_memory(self) -> None:
        self.peak_rss_bytes = max(self.peak_rss_bytes, self.memory_bytes())

    def copy_receipts(self) -> None:
        """Append what each node's receipts files gained to their copies here, each stamp on
        this machine's clock."""
        with self._copy_lock:  # the copying thread and a final copy never interleave
            hosts = self._on(None)
            read_up_to = [{name: offset for (number, name), (offset, _) in self._copied.items()
                           if number == host.number} for host in hosts]
            gained = self._get([host.agent.read_receipts.remote(self.key, offsets)
                                for host, offsets in zip(hosts, read_up_to, strict=True)])
            self.ledger_dir.mkdir(parents=True, exist_ok=True)
            for host, files in zip(hosts, gained, strict=True):
                for name, data in files.items():
                    self._append(host, name, data)

    def _append(self, host: Node, name: str, data: bytes) -> None:
        """Whole lines to the copy of `name`; a torn last line waits for the rest."""
        offset, torn = self._copied.get((host.number, name), (0, b""))
        lines = torn + data
        end = lines.rfind(b"\n") + 1
        self._copied[host.number, name] = (offset + len(data), lines[end:])
        with (self.ledger_dir / local_name(host.number, name)).open("ab") as copy:
            copy.write(on_our_clock(lines[:end], host.clock_offset_ns))

    def _copy_often(self, stopping: threading.Event) -> None:
        sampled = 0.0
        while not stopping.wait(COPY_EVERY_SEC):
            # A node lost or a member gone meanwhile: check_alive says so in the engine's thread.
            with contextlib.suppress(self._ray.exceptions.RayError):
                self.copy_receipts()
                if time.monotonic() - sampled >= MEMORY_SAMPLE_SEC:
                    sampled = time.monotonic()
                    self.sample_memory()


def local_name(node: int, remote_name: str) -> str:
    """receipts-SID.log of node N, as its copy in the engine's ledger folder is named."""
    return f"receipts-node{node}-{remote_name.removeprefix('receipts-')}"


def on_our_clock(lines: bytes, offset_ns: int) -> bytes:
    """Receipt lines (RUN SEQ SENT_NS RECEIVED_NS STATUS) with RECEIVED_NS, stamped on a clock
    `offset_ns` ahead of ours, moved onto ours. SENT_NS is ours already: the producer's."""
    if not offset_ns:
        return lines
    out = []
    for line in lines.splitlines(keepends=True):
        parts = line.split(b" ")
        if len(parts) == 5:
            parts[3] = str(int(parts[3]) - offset_ns).encode()
        out.append(b" ".join(parts))
    return b"".join(out)


class NodePause:
    """Every consumer process on some nodes frozen (SIGSTOP), then continued (SIGCONT).

    The healer (faults/healer.py) cannot reach another host: should the run die meanwhile, the
    agents die with Ray, and each consumer's watchdog kills its session, frozen or not.
    """

    kind = "consumer-pause"

    def __init__(self, fleet: ClusterFleet, hosts: list[Node]) -> None:
        self.fleet, self.hosts = fleet, hosts

    def heal_order(self) -> HealOrder:
        return HealOrder()

    def inject(self) -> None:
        self._signal(signal.SIGSTOP)

    def heal(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        self.fleet._get([host.agent.pause.remote(self.fleet.key, signum)
                         for host in self.hosts])
