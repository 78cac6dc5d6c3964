"""A fault beyond the consumer, injected while a repeat runs: at its trigger (a share of the
messages received), in force for its duration, then healed; each step on the repeat's timeline.

It runs in a thread of its own beside the producer and the settle loop, reading the ledger with a
reader of its own. Before injecting it tells the healer (faults/healer.py) what would undo the
fault, so that a run that dies meanwhile leaves no broker down, no proxy cut, no worker frozen.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from queuebench.adapters.base import Adapter
from queuebench.engine.consumer import ConsumerFleet
from queuebench.engine.ledger import LedgerReader
from queuebench.engine.workload import FaultCase
from queuebench.faults import (
    BrokerFault,
    Fault,
    NetworkFault,
    Toxiproxy,
    proxied_url,
    service_of,
)
from queuebench.faults.healer import Healer
from queuebench.services.catalog import SERVICES

POLL_SEC = 0.02
# Kafka's clients follow the addresses the broker advertises: behind the proxy they reach its
# PROXIED listener (services/jvm.py), whose advertised address is the proxy's.
KAFKA_PROXIED_PORT = SERVICES["kafka"].other_ports[1]


def not_applicable(fault: FaultCase, adapter: Adapter) -> str | None:
    """Why the fault means nothing for this pair, in one line; None when it does."""
    if fault.kind != "consumer-pause" and service_of(adapter.scheme) is None:
        return (f"{adapter.scheme} has no broker process or network to break: its queue is a "
                "file the application opens")
    return None


def proxy_name(adapter: Adapter) -> str:
    return f"qb-{service_of(adapter.scheme)}"


def behind_proxy(adapter: Adapter) -> Adapter:
    """A twin of `adapter` whose producers and consumers reach its broker through a Toxiproxy
    proxy (the engine's own checks keep the direct one, so a cut cannot hang them)."""
    upstream = KAFKA_PROXIED_PORT if service_of(adapter.scheme) == "kafka" \
        else urlsplit(adapter.url).port
    port = Toxiproxy().proxy(proxy_name(adapter), upstream)
    twin = type(adapter)(proxied_url(adapter.url, port), queue=adapter.queue,
                         variant=adapter.variant.name)
    if hasattr(adapter, "partitions"):
        twin.partitions = adapter.partitions
    return twin


def make_fault(fault: FaultCase, adapter: Adapter, consumers: ConsumerFleet) -> Fault:
    """The fault object of a cell's FaultCase, made when it is injected (a pause freezes the
    consumer sessions running then)."""
    kind, _, mode = fault.kind.partition("-")
    if kind == "broker":
        return BrokerFault(service_of(adapter.scheme), mode)
    if kind == "network":
        return NetworkFault(Toxiproxy(), proxy_name(adapter), mode, latency_ms=fault.latency_ms,
                            jitter_ms=fault.jitter_ms, bandwidth_kb_s=fault.bandwidth_kb_s)
    # One worker (or one node's) frozen, the others running: they may take over what it holds.
    return consumers.pause_fault(fault.node)


class Injector(threading.Thread):
    """Injects `fault` once `at_received` of the messages arrived, heals it `for_sec` later;
    `in_force` is set from the injection until the heal."""

    def __init__(self, fault: FaultCase, make: Callable[[], Fault], *, ledger_dir: Path,
                 run_id: str, messages: int, healer: Healer, in_force: threading.Event,
                 note: Callable[[str], None]) -> None:
        super().__init__(name=f"inject-{fault.kind}", daemon=True)
        self.make, self.healer, self.note = make, healer, note
        self.reader = LedgerReader(ledger_dir, run_id)
        self.trigger = max(1, math.ceil(fault.at_received * messages))
        self.for_sec = fault.for_sec
        self.cancelled = threading.Event()
        self.in_force = in_force
        self.error: BaseException | None = None
        self.figures: dict[str, object] = {"fault": fault.kind, "injected": False}
        # (injected, healed) in wall-clock ns, the clock of the send and receipt stamps
        self.span: tuple[int, int] | None = None

    def run(self) -> None:
        try:
            self._inject_then_heal()
        except BaseException as exc:  # re-raised in the engine's thread by `finish`
            self.error = exc
        finally:
            self.reader.close()

    def _inject_then_heal(self) -> None:
        while self.reader.distinct < self.trigger:
            if self.cancelled.wait(POLL_SEC):
                return
            self.reader.poll()
        fault = self.make()
        self.healer.expect(fault.heal_order())
        self.in_force.set()
        injected, injected_ns = time.monotonic(), time.time_ns()
        received_before = self.reader.distinct
        try:
            fault.inject()
            self.note(f"{fault.kind} injected")
            self.figures.update(injected=True, received_at_injection=received_before)
            self.cancelled.wait(self.for_sec)
        finally:
            fault.heal()
            self.healer.healed()
            self.in_force.clear()
        healed = time.monotonic()
        self.span = (injected_ns, time.time_ns())
        self.note(f"{fault.kind} healed")
        self.figures["in_force_sec"] = round(healed - injected, 3)

    def finish(self) -> dict[str, object]:
        """Stop waiting (healing first if the fault is still in force); its figures; what went
        wrong in the thread, raised here."""
        self.cancelled.set()
        self.join()
        if self.error is not None:
            raise self.error
        return self.figures
