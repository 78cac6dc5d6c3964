"""One repeat of one case: its producer, its consumers, its ledger, and the shared figures."""

from __future__ import annotations

import itertools
import operator
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from queuebench.adapters.base import Adapter, Backlog
from queuebench.engine.consumer import REVIVE_AFTER_SEC, ConsumerFleet
from queuebench.engine.interrupt import Interrupt
from queuebench.engine.ledger import LedgerReader, Receipts, Tally, tally
from queuebench.engine.metrics import latency_summary_and_histogram, rate
from queuebench.engine.producers import Produced, Sending
from queuebench.engine.producers import produce as produce_messages
from queuebench.engine.results import ExperimentConfig
from queuebench.engine.workload import Cell
from queuebench.payloads.records import StockRecord

if TYPE_CHECKING:
    from queuebench.cluster import Cluster

POLL_SEC = 0.05
BACKLOG_CHECK_EVERY_SEC = 1.0
# With every message received, or the broker holding nothing more, this much quiet ends the wait.
DEFAULT_IDLE_SEC = 5.0


@dataclass
class Experiment:
    """One repeat of one case on one adapter: the records it sends, its ledger and consumers."""

    config: ExperimentConfig
    cell: Cell
    adapter: Adapter
    records: Sequence[list[StockRecord]]  # message seq's stock records, encoded when it is sent
    folder: Path  # this experiment's ledger and consumer log
    progress: Callable[[int], None] = lambda received: None
    idle_sec: float = DEFAULT_IDLE_SEC
    # Where producers and consumers reach the broker, if not as `adapter` does: through a proxy
    # that a network fault cuts (the engine's own checks keep `adapter`).
    data_adapter: Adapter | None = None
    # The cluster whose nodes the consumers run on (cluster/); None: this machine.
    cluster: Cluster | None = None

    def __post_init__(self) -> None:
        self.run_id = uuid.uuid4()
        self.data_adapter = self.data_adapter or self.adapter
        self.ledger = LedgerReader(self.folder / "ledger", str(self.run_id))
        self.fault_in_force = threading.Event()  # a broker down, a network cut: quiet is no sign
        fleet = self.cluster.fleet if self.cluster else ConsumerFleet
        self.consumers = fleet(
            self.data_adapter, count=self.cell.processes,
            nodes=self.cell.nodes_of_processes(self.cluster.labels if self.cluster else None),
            ledger_dir=self.folder / "ledger",
            work_ms=self.cell.work_ms, fmt=self.cell.format, concurrency=self.cell.concurrency,
            fail_fraction=self.cell.fail_fraction, log_path=self.folder / "consumer.log",
            # A kill loses a batch of receipts held: only a workload that never stops, kills or
            # breaks anything may batch them.
            batch_receipts=not (self.cell.stop or self.cell.fault))
        self.sizes = [0] * self.cell.messages  # bytes of each payload as sent
        self.started = time.monotonic()
        self.timeline: list[dict[str, object]] = []  # what happened when, for the results
        self.consumers_ready: int | None = None  # consumer processes that proved ready
        self.consumer_pss_bytes = 0  # the consumers' proportional memory once the work was done
        self.produced: Produced | None = None  # what produce() sent and had acknowledged
        self.producer_nodes: list[int] | None = None  # each producer process's node; None: here
        self.consumer_exits = 0  # workers that exited during a fault and were started again
        self.fault_span: tuple[int, int] | None = None  # a fault's (injected, healed), wall ns

    @property
    def payload_bytes(self) -> int:
        return sum(self.sizes)

    def received_bytes(self, receipts: Receipts) -> int:
        """Bytes of the distinct messages that arrived: a message received twice counts once."""
        return sum(itertools.compress(self.sizes, receipts.distinct_seqs(len(self.sizes))))

    def produce(self) -> Produced:
        """Encode and send every message by the rate shape, in the workload's producer mode
        (sync, async with an in-flight limit, or several processes); return when the first was
        meant to be sent, the seconds taken and what the broker acknowledged, per message.

        Each message is stamped with when it was meant to be sent: a paced producer that falls
        behind its schedule then shows as latency (no coordinated omission). Encoding the
        records is inside the loop, as it is in a user's producer. See engine/producers.py.
        """
        sending = Sending(self.run_id, self.records, self.cell.format,
                          self.cell.intended_offsets_ns())
        if self.cluster and self.cell.producer_mode == "processes":  # on the cluster's nodes
            self.producer_nodes = self.cell.nodes_of_producers(self.cluster.labels)
            self.produced = self.cluster.produce(self.data_adapter, sending, self.cell.messages,
                                                 self.producer_nodes)
        else:
            self.produced = produce_messages(
                self.data_adapter, sending, self.cell.messages, mode=self.cell.producer_mode,
                count=self.cell.producers, in_flight=self.cell.in_flight)
        self.sizes[:] = self.produced.sizes
        return self.produced

    def watch_consumers(self) -> None:
        """A consumer that died is a failed repeat; but where a fault breaks the broker or the
        network, a worker that gives up is started again, as its supervisor would, and noted."""
        if not self.cell.fault:
            self.consumers.check_alive()
            return
        for code in self.consumers.revive():
            self.consumer_exits += 1
            self.note(f"a consumer exited (code {code}); started again {REVIVE_AFTER_SEC:g} s "
                      "later, as a supervisor would")

    def note(self, event: str) -> None:
        """Put `event` on the repeat's timeline, seconds from its start."""
        self.timeline.append({"t": round(time.monotonic() - self.started, 3), "event": event})

    def close(self) -> None:
        self.ledger.close()

    def distinct_received(self) -> int:
        self.ledger.poll()
        return self.ledger.distinct

    def wait_for(self, predicate: Callable[[], bool], deadline: float,
                 every_sec: float = POLL_SEC) -> bool:
        """Poll until `predicate` holds; False if the deadline passed first."""
        while not predicate():
            Interrupt.check()
            self.watch_consumers()
            self.progress(self.distinct_received())
            if time.monotonic() > deadline:
                return False
            time.sleep(every_sec)
        return True

    def wait_settled(self, deadline: float) -> str:
        """Wait until every message is accounted for; return which condition ended the wait.

        "complete": every message received and the broker holds none waiting.
        "broker empty": the broker holds nothing waiting and no receipt came for `idle_sec`, so
        what is missing will not come. "deadline": neither happened in time. A retry the broker
        holds back until after the deadline is not waited for (Dramatiq's first retry comes 15 s
        after a failure, its last weeks later): the adapter's failure_outcome counts it.
        """
        expected = self.cell.messages
        last_count, last_change, last_backlog_check = -1, time.monotonic(), 0.0
        while True:
            Interrupt.check()
            self.watch_consumers()
            count = len(self.ledger.poll())
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
                self.progress(self.distinct_received())
            in_force = self.fault_in_force.is_set()
            if in_force:  # the broker down, the network cut: quiet is no sign, nor asking it
                last_change = now
            all_in = self.distinct_received() >= expected
            quiet = now - last_change >= self.idle_sec
            if (all_in or quiet) and not in_force \
                    and now - last_backlog_check >= BACKLOG_CHECK_EVERY_SEC:
                last_backlog_check = now
                try:
                    backlog = self.adapter.backlog()
                except Exception as exc:
                    if not self.cell.fault:
                        raise
                    # A broker restarted under a client leaves it stale (kafka-python's admin
                    # keeps metadata naming no broker): let it go, a new one asks next time.
                    self.note(f"backlog check failed after the fault, asked again: {exc}")
                    self.adapter.cleanup()
                    continue
                deadline_wall = time.time() + deadline - now
                nothing_waiting = backlog is None or backlog.waiting_by(deadline_wall) == 0
                if all_in and nothing_waiting:
                    return "complete"
                if quiet and backlog is not None and nothing_waiting:
                    return "broker empty"
            if now > deadline:
                return "deadline"
            time.sleep(POLL_SEC)


def delivery_figures(receipts: Receipts, result: Tally) -> dict[str, object]:
    """The seed's loss fields plus the sequence numbers behind them, the handler's failures
    (fail_fraction), and the latency from each message's intended send time to the receipt of
    a handler that returned (its histogram kept, so that repeats merge)."""
    handled = receipts.handled()
    latency, histogram = latency_summary_and_histogram(
        map(operator.sub, handled.received_ns, handled.sent_ns))
    return {
        "total": result.expected,
        "successful": result.received,
        # The seed's meaning: not processed successfully, so total = successful + failed. That
        # is the lost messages plus those whose handler failed (failed_by_handler); with
        # fail_fraction 0 it equals lost, as it always did.
        "failed": len(result.lost) + len(result.failed),
        "failed_by_handler": len(result.failed),
        "failed_seqs": list(result.failed),
        "failed_attempts": result.failed_attempts,
        "meant_to_fail": result.meant_to_fail,
        "unexpected_failures": len(result.unexpected_failures),
        "lost": len(result.lost),
        "lost_seqs": list(result.lost),
        "duplicates": result.duplicate_deliveries,
        "duplicate_seqs": list(result.duplicates),
        "corrupt": result.corrupt,
        "message_loss_pct": round(result.loss_pct, 3),
        "latency_ms": latency,
        "latency_histogram": histogram,
    }


def broker_check(backlog: Backlog | None, result: Tally) -> dict[str, object]:
    """Does what the broker still holds agree with the ledger?

    It agrees when nothing is left waiting but retries held back for later (the ledger's lost
    messages will not come later) and the broker holds no more stranded messages and retries
    than the ledger lost or saw fail. Where it cannot count stranded messages, `agrees` is None
    (cannot tell), unless messages still wait: False.
    """
    if backlog is None:
        return {"checked": False, "detail": "the broker cannot tell what it holds"}
    agrees: bool | None
    retries = len(backlog.due_at)
    if backlog.waiting != retries:
        agrees = False
    elif backlog.stranded is None:
        agrees = None
    else:
        # A failed message the library keeps (RQ's failed registry, Dramatiq's dead letters and
        # retries) is accounted for by the ledger's failures.
        agrees = backlog.stranded + retries <= len(result.lost) + len(result.failed)
    return {"checked": True, "waiting": backlog.waiting, "stranded": backlog.stranded,
            "agrees": agrees, "detail": backlog.detail}


def throughput_figures(count: int, payload_bytes: int, seconds: float) -> dict[str, float | None]:
    return {"msg_s": rate(count, seconds),
            "mb_s": round(payload_bytes / seconds / 1e6, 3) if seconds > 0 else None}


def check_tally(experiment: Experiment) -> tuple[Receipts, Tally]:
    """The final read of the ledger, which then lets go of its consumer files.

    Returns the receipts of handlers that returned (what the consume rates, bytes and latency
    are taken over) and the tally over every receipt, failed attempts included.
    """
    receipts = experiment.ledger.poll()
    experiment.ledger.close()
    result = tally(receipts, experiment.cell.messages, experiment.cell.fail_fraction)
    return receipts.handled(), result
