"""Producer processes on the nodes of a cluster (`producers: {mode: processes}` with
`--cluster`), placed by `producers.placement` (default: spread over every node).

Each node's agent forks its share of the processes exactly as a run does on one machine
(engine/producers.py: process i sends sequence numbers i, i + count, ...), once all are ready
they are told when the first message is meant to be sent, and their reports are merged into one
`Produced`. Every time a node's producer keeps is on the engine's clock: the node's measured
offset is taken off its own, so the send stamps in the messages, and so the latency the receipts
give, are on the same clock as every receive stamp (cluster/fleet.py).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from queuebench.adapters import spec_of
from queuebench.adapters.base import Adapter
from queuebench.engine.producers import Produced, ProducerFailed, Sending, merged, shares

if TYPE_CHECKING:
    from queuebench.cluster import Cluster

# The nodes hear when to start a round trip after the engine chose it: a start this far ahead
# keeps that out of the first messages' latency.
GO_LEAD_NS = 200_000_000


def produce_on_nodes(cluster: Cluster, adapter: Adapter, sending: Sending, messages: int,
                     nodes: list[int]) -> Produced:
    """Producer process i on node `nodes[i]`; what they sent and had acknowledged."""
    import ray

    seqs = shares(messages, len(nodes))
    hosts = [host for host in cluster.nodes if host.number in nodes]
    key = uuid.uuid4().hex
    sending_ref = ray.put(sending)  # one copy of the records, however many nodes take it
    try:
        _fail_on(hosts, ray.get([host.agent.start_producers.remote(
            key, spec_of(adapter), sending_ref, messages,
            [share for share, node in zip(seqs, nodes, strict=True) if node == host.number],
            host.clock_offset_ns) for host in hosts]))
        first_ns = time.time_ns() + GO_LEAD_NS
        ray.get([host.agent.go.remote(key, first_ns) for host in hosts])
        outcomes = ray.get([host.agent.producer_reports.remote(key) for host in hosts])
        _fail_on(hosts, [error for _, error in outcomes])
        return merged([report for reports, _ in outcomes for report in reports], messages,
                      first_ns, len(nodes))
    finally:
        ray.get([host.agent.forget_producers.remote(key) for host in hosts])


def _fail_on(hosts: list, errors: list[str | None]) -> None:
    for host, error in zip(hosts, errors, strict=True):
        if error:
            raise ProducerFailed(f"on node {host.number} ({host.info['host']}): {error}")
