"""Runs a plan: every cell of every workload over every pair and variant, repeats interleaved,
into a run folder."""

from __future__ import annotations

import hashlib
import math
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from queuebench import adapters
from queuebench.adapters.base import Adapter
from queuebench.engine import injector, phases
from queuebench.engine.common import Experiment
from queuebench.engine.environment import available_memory_bytes, library_version
from queuebench.engine.interrupt import Interrupt
from queuebench.engine.producers import error_text, has_async_send
from queuebench.engine.results import ExperimentConfig, Result, RunFolder
from queuebench.engine.workload import (
    Cell,
    OfMaxRate,
    Search,
    Spread,
    Workload,
    cells,
    default_deadline,
)
from queuebench.errors import BrokerUnreachable, QueuebenchError, UsageError
from queuebench.faults import service_of
from queuebench.payloads import (
    DEFAULT_STOCK_DB_URL,
    SIZE_RECORD_COUNTS,
    StockRecord,
    encode,
    open_stock_db,
    payload_sizes,
)
from queuebench.payloads.builder import message_bodies
from queuebench.redact import redact
from queuebench.services import durability
from queuebench.worker.envelope import HEADER

if TYPE_CHECKING:
    from queuebench.cluster import Cluster

REACHABLE_TIMEOUT_SEC = 10.0
# Messages encoded before a run to check the largest against the pair's size limit: the stock
# table repeats every 200 messages of 100 records.
SIZE_SAMPLE = 200


@dataclass(frozen=True)
class Plan:
    workloads: tuple[tuple[str, Workload], ...]  # (experiment name, its workload)
    pairs: tuple[str, ...]  # pair names, group names or full pair URLs
    variants: tuple[str, ...] = ()  # empty: every variant each pair declares
    stock_db_url: str = DEFAULT_STOCK_DB_URL
    reachable_only: bool = False

    @property
    def cells(self) -> list[Cell]:
        return [cell for name, workload in self.workloads for cell in cells(name, workload)]


def say(line: str) -> None:
    print(redact(line), file=sys.stderr, flush=True)


def resolve_pairs(plan: Plan) -> list[tuple[adapters.PairEntry, str]]:
    """Every pair the plan names, once, with its URL; each asked-for variant checked.

    Nothing connects here: a typo is refused before any payload is built or folder made.
    """
    pairs: dict[str, tuple[adapters.PairEntry, str]] = {}
    for name in adapters.expand(list(plan.pairs)):
        entry, url = adapters.resolve_url(name)
        if entry.scheme in pairs:
            if pairs[entry.scheme][1] != url:  # results are keyed by pair: two would mix
                raise UsageError(f"{entry.scheme} is given twice with different URLs "
                                 f"({redact(pairs[entry.scheme][1])} and {redact(url)}); "
                                 "run each in a run of its own")
            continue  # the same pair by name and by URL runs once
        cls = adapters.adapter_class(entry)
        for variant in plan.variants:
            cls.find_variant(variant)
        pairs[entry.scheme] = (entry, url)
    return list(pairs.values())


def reachable_pairs(plan: Plan, pairs: list[tuple[adapters.PairEntry, str]]
                    ) -> list[tuple[adapters.PairEntry, str]]:
    """The pairs whose broker answers; with `reachable_only`, the others are skipped."""
    answering = []
    for entry, url in pairs:
        probe = adapters.adapter_class(entry)(url, queue="queuebench-probe")
        try:
            probe.check_reachable(REACHABLE_TIMEOUT_SEC)
        except BrokerUnreachable as exc:
            if not plan.reachable_only:
                raise
            say(f"skipping {entry.scheme}: {exc}")
            continue
        finally:
            probe.cleanup()
        answering.append((entry, url))
    if not answering:
        raise BrokerUnreachable("no broker of the pairs asked for answers; start them with "
                                "`make services-up` or give reachable URLs with --pair")
    return answering


def check_stock_db(plan: Plan) -> None:
    """Open the stock database once, so that a bad --stock-db fails before the run begins."""
    open_stock_db(plan.stock_db_url).dispose()


def _size_table(plan: Plan, pairs: list[tuple[adapters.PairEntry, str]]) -> list[dict]:
    counts = sorted({*SIZE_RECORD_COUNTS, *(n for cell in plan.cells for n in cell.record_counts)})
    rows = []
    for size in payload_sizes(plan.stock_db_url, counts):
        fits = {}
        for entry, _ in pairs:
            limit = adapters.adapter_class(entry).size_limit
            wire = limit.wire_bytes(size.bytes + HEADER.size)
            fits[entry.scheme] = {"wire_bytes": wire,
                                  "fits": limit.max_bytes is None or wire <= limit.max_bytes}
        rows.append({"records": size.records, "format": size.fmt, "bytes": size.bytes,
                     "pairs": fits})
    return rows


def _over_limit(adapter: Adapter, sizes: Iterable[int]) -> str | None:
    limit = adapter.size_limit
    largest = max(sizes) + HEADER.size
    wire = limit.wire_bytes(largest)
    if limit.max_bytes is None or wire <= limit.max_bytes:
        return None
    return (f"{adapter.scheme}: payload {wire:,} bytes on the wire is over its limit of "
            f"{limit.max_bytes:,} bytes ({limit.error})")


def _pair_info(adapter: Adapter) -> dict[str, object]:
    try:
        broker_version = adapter.broker_version()
    except Exception as exc:  # a version is nice to have; its absence must not fail the run
        broker_version = f"unknown ({type(exc).__name__})"
    finally:  # the connection it took: a row that does not run would leave it open otherwise
        adapter.cleanup()
    return {**adapter.describe(), "library_version": library_version(adapter.library),
            "broker_version": broker_version}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class PlanRun:
    """The state of one plan's run: its folder, its results so far, the stock records of each
    message count, and the drain rate each calibration reached."""

    def __init__(self, plan: Plan, folder: RunFolder, cluster: Cluster | None = None) -> None:
        self.plan, self.folder, self.cluster = plan, folder, cluster
        # Queues are named by when this session started: a resumed run's case must not share a
        # queue with the case cut off, whose messages may still be in it.
        self.queue_prefix = f"qb-{datetime.now(UTC):%Y%m%dt%H%M%Sz}"
        self.results: list[Result] = folder.kept_results()  # a resumed run's, before it stopped
        self._bodies: dict[tuple, Sequence] = {}
        # (pair, variant, case) -> its drain rate; kept in the folder's progress, as a string
        self.max_rates: dict[str, float | None] = dict(folder.progress["drain_rates"])
        self._unit_memory: dict[tuple[str, str], tuple[float, float]] = {}  # memory_per_unit

    def run(self, cell: Cell, entry: adapters.PairEntry, url: str, variant: str,
            repeat: int) -> Result:
        if isinstance(cell.rate, Search):
            return self._search(cell, entry, url, variant)
        if isinstance(cell.rate, OfMaxRate):
            max_rate = self._max_rate(cell, entry, url, variant)
            if max_rate is None:
                return self._case(cell, entry, url, variant, repeat, error=NO_CALIBRATION)
            cell = replace(cell, rate=round(cell.rate.fraction * max_rate, 1))
        if cell.drain_sec:
            calibration = replace(cell, messages=min(cell.messages, DRAIN_CALIBRATION_MESSAGES),
                                  producers=1, producer_mode="sync", in_flight=1, partitions=1,
                                  drain_sec=None)
            drain_rate = self._max_rate(calibration, entry, url, variant)
            if drain_rate is None:
                return self._case(cell, entry, url, variant, repeat, error=NO_DRAIN_RATE)
            drained = math.ceil(drain_rate * cell.drain_sec)
            cell = replace(cell, messages=max(calibration.messages, min(cell.messages, drained)))
        return self._case(cell, entry, url, variant, repeat)

    def _search(self, cell: Cell, entry: adapters.PairEntry, url: str, variant: str) -> Result:
        """The highest constant rate the case sustains (see workload.Search): probes step the
        rate up until a rate fails, then bisect between the last pass and the first fail. Each
        probe is a row (`sustained_probe` in its measurements); the answer is a row of its own,
        scenario "sustained", with `sustained_rate` and the probes that decided it."""
        search: Search = cell.rate  # type: ignore[assignment]
        start = search.start
        if start is None:
            max_rate = self._max_rate(replace(cell, rate=None), entry, url, variant)
            if max_rate is None:
                return self._case(cell, entry, url, variant, 0, error=NO_CALIBRATION)
            start = search.start_of_max * max_rate
        probes: list[dict[str, object]] = []

        def probe(rate: float) -> bool:
            messages = math.ceil(rate * search.probe_sec) if search.probe_sec else cell.messages
            result = self._case(replace(cell, rate=round(rate, 1), messages=max(2, messages)),
                                entry, url, variant, 0, p99_bound_ms=search.p99_ms)
            probes.append({"rate": round(rate, 1), **result.measurements["sustained_probe"]})
            return probes[-1]["sustained"]

        passed, failed, failed_below = search_rate(search, start, probe)
        answer = {"sustained_rate": round(passed, 1) if passed else None,
                  "p99_bound_ms": search.p99_ms, "probes": probes,
                  "first_failed_rate": round(failed, 1) if failed != math.inf else None,
                  "failed_below_rate": round(failed_below, 1) if failed_below else None}
        return self._case(replace(cell, rate=round(passed, 1) if passed else None), entry,
                          url, variant, 0, answer=answer)

    def _max_rate(self, cell: Cell, entry: adapters.PairEntry, url: str,
                  variant: str) -> float | None:
        """The drain rate of the case as fast as it goes, measured once per run (its result is
        a row of the report like any other)."""
        unpaced = replace(cell, rate=None, repeats=1)
        key = repr((entry.scheme, variant, unpaced))
        if key not in self.max_rates:
            result = self._case(unpaced, entry, url, variant, repeat=0)
            clean = result.status == "ok" and not result.measurements.get("lost")
            self.max_rates[key] = result.measurements.get("drain_throughput") if clean else None
        return self.max_rates[key]

    def _case(self, cell: Cell, entry: adapters.PairEntry, url: str, variant: str,
              repeat: int, error: str | None = None, p99_bound_ms: float | None = None,
              answer: dict[str, object] | None = None) -> Result:
        """One repeat of `cell`, a row of the run: measured; or an error row; or, with
        `answer`, a search's answer row; or "n/a" where the case means nothing for the pair."""
        cls = adapters.adapter_class(entry)
        unrun = error or answer
        config = ExperimentConfig(
            scenario="sustained" if answer else cell.kind, pair=entry.scheme, variant=variant,
            format=cell.format, messages=cell.messages, records=cell.records,
            work_ms=cell.work_ms, deadline_sec=0.0 if unrun else default_deadline(
                cell, cls.find_variant(variant).redelivery_sec),
            wait_sec=cell.wait_sec if cell.start == "after" else None, stop=cell.stop,
            repeat=repeat, workload=cell.workload, consumers=cell.processes,
            concurrency=cell.concurrency, producers=cell.producers,
            producer_mode=cell.producer_mode, fail_fraction=cell.fail_fraction,
            rate=None if isinstance(cell.rate, OfMaxRate | Search) else cell.rate,
            fault=cell.fault.label if cell.fault else None, payload=payload_label(cell),
            partitions=cell.topic_partitions if hasattr(cls, "partitions") else None,
            in_flight=cell.in_flight if cell.producer_mode == "async" else None,
            durability=cell.durability)
        number = len(self.results)
        adapter = cls(url, queue=f"{self.queue_prefix}-{number:03d}", variant=variant)
        reason = not_applicable(cell, adapter)
        if error:
            say(f"error {config.label}: {error}")
            result = Result(config, "error", _pair_info(adapter), error=error)
        elif answer:
            say(f"{config.label}: sustains {answer['sustained_rate']} msg/s at p99 <= "
                f"{answer['p99_bound_ms']:g} ms")
            result = Result(config, "ok", _pair_info(adapter), answer)
        elif reason:
            say(f"n/a {config.label}: {reason}")
            # The swept value it stood for, which the config leaves out for a pair without it
            result = Result(config, "n/a", _pair_info(adapter),
                            {"not_applicable": reason, "partitions": cell.partitions})
        else:
            if hasattr(adapter, "partitions"):  # a Kafka pair's topic
                adapter.partitions = cell.topic_partitions
            key = (cell.records, cell.messages, cell.payload_bytes, cell.mix)
            if key not in self._bodies:
                self._bodies[key] = message_bodies(
                    self.plan.stock_db_url, count=cell.messages, records=cell.records,
                    payload_bytes=cell.payload_bytes, mix=cell.mix)
            workdir = self.folder.path / "experiments" / f"{number:03d}-{_slug(config.label)}"
            try:
                cell, capped = self._fitting(cell, adapter, self._bodies[key], workdir)
            except Exception as exc:  # a consumer that did not start is this row's error
                adapter.cleanup()
                error = redact(f"measuring what a consumer unit costs: {error_text(exc)}")
                say(f"error {config.label}: {error}")
                result = Result(config, "error", _pair_info(adapter), error=error)
            else:
                if capped:
                    config = replace(config, concurrency=cell.concurrency)
                result = run_one(config, cell, adapter, self._bodies[key], workdir,
                                 cluster=self.cluster)
                if capped:
                    result.measurements["capped"] = capped
            if p99_bound_ms is not None:
                result.measurements["sustained_probe"] = sustained(result, p99_bound_ms)
        self.folder.add(result)
        self.results.append(result)
        return result


    def _fitting(self, cell: Cell, adapter: Adapter, bodies: Sequence,
                 workdir: Path) -> tuple[Cell, dict[str, object] | None]:
        """`cell`, or where its consumers would not fit in memory, the cell at the largest
        concurrency that does, with what decided it (never a silent cap)."""
        if cell.processes * cell.concurrency <= PROBE_ABOVE_UNITS:
            return cell, None
        key = (adapter.scheme, adapter.variant.name)
        if key not in self._unit_memory:
            self._unit_memory[key] = memory_per_unit(cell, adapter, bodies,
                                                     workdir / "memory-probe", self.cluster)
        per_unit, base = self._unit_memory[key]
        if self.cluster:  # on the node where memory is scarcest for its processes
            per_process = self.cluster.memory_per_process(
                cell.nodes_of_processes(self.cluster.labels))
        else:
            per_process = available_memory_bytes() / cell.processes
        available = MEMORY_SHARE * per_process * cell.processes
        fits = int((MEMORY_SHARE * per_process - base) // per_unit)
        if fits >= cell.concurrency:
            return cell, None
        fits = max(1, fits)
        capped = {"asked_concurrency": cell.concurrency, "ran_concurrency": fits,
                  "memory_per_unit_mb": round(per_unit / 1e6, 2),
                  "memory_per_process_mb": round(base / 1e6, 1),
                  "memory_available_mb": round(available / 1e6),
                  "reason": f"{cell.concurrency} units at {per_unit / 1e6:.1f} MB each (measured "
                            f"at 1 and {PROBE_UNITS}) would not fit in {available / 1e6:,.0f} MB; "
                            f"ran {fits}"}
        say(f"{adapter.scheme}: {capped['reason']}")
        return replace(cell, concurrency=fits), capped


# A case of more consumer units than this first measures what one costs, so that a fleet that
# would not fit in memory runs at the largest size that does, and says so.
PROBE_ABOVE_UNITS = 16
PROBE_UNITS = 4
PROBE_DEADLINE_SEC = 120.0
MEMORY_SHARE = 0.8  # of the memory available now, what a consumer fleet may take


def memory_per_unit(cell: Cell, adapter: Adapter, bodies: Sequence, workdir: Path,
                    cluster: Cluster | None = None) -> tuple[float, float]:
    """(bytes one more unit of concurrency costs, bytes of a consumer process besides its
    units), in proportional memory (PSS: a forked child's shared pages split with its parent),
    from one warm consumer process at 1 and at PROBE_UNITS units."""
    measured = []
    for units in (1, PROBE_UNITS):
        small = replace(cell, processes=1, concurrency=units, messages=1, stop=None,
                        stop_node=None, fault=None, placement=Spread())
        config = ExperimentConfig("probe", adapter.scheme, adapter.variant.name, cell.format, 1,
                                  cell.records, cell.work_ms, PROBE_DEADLINE_SEC,
                                  concurrency=units)
        experiment = Experiment(config, small, adapter, bodies, workdir / f"units-{units}",
                                cluster=cluster)
        adapter.prepare()
        try:
            phases.warm_up(experiment, time.monotonic() + PROBE_DEADLINE_SEC)
            measured.append(experiment.consumers.memory_bytes(proportional=True))
        finally:
            experiment.consumers.ensure_stopped()
            experiment.close()
    per_unit = max(1.0, (measured[1] - measured[0]) / (PROBE_UNITS - 1))
    return per_unit, max(0.0, measured[0] - per_unit)


CALIBRATION_FAILED = "its calibration run, as fast as it goes, did not receive every message"
NO_CALIBRATION = f"no rate to pace at: {CALIBRATION_FAILED}"
NO_DRAIN_RATE = f"no message count: {CALIBRATION_FAILED}"
DRAIN_CALIBRATION_MESSAGES = 1000
# A search stops bisecting once the first failing rate is within this fraction of the last pass.
SEARCH_RESOLUTION = 0.05


def search_rate(search: Search, start: float,
                probe: Callable[[float], bool]) -> tuple[float, float, float]:
    """The highest rate that passed (0 when none did), the lowest rate above it that failed
    (inf when none did) and the highest rate below it that failed (0 when none did), probing
    from `start` as workload.Search says; `probe(rate)` runs one probe.

    When `start` fails, the next probe goes up once before the search steps down: latency
    that does not grow with the rate (a send batch that waits out its window unless it fills,
    a polling interval) fails low rates and may pass higher ones."""
    passed, rate = 0.0, start
    failures: list[float] = []
    for _ in range(search.probes):
        if _rate_holds(rate, search.fails, probe):
            passed = max(passed, rate)
        else:
            failures.append(rate)
        failed = min((f for f in failures if f > passed), default=math.inf)
        if failed == math.inf:
            rate = passed * search.step
        elif not passed:
            rate = start * search.step if failures == [start] else min(failures) / search.step
        elif failed / passed <= 1 + SEARCH_RESOLUTION:
            break
        else:
            rate = (passed + failed) / 2
    return passed, failed, max((f for f in failures if f < passed), default=0.0)


def _rate_holds(rate: float, fails: int, probe: Callable[[float], bool]) -> bool:
    """Probes at `rate` until more passed than failed (True) or `fails` failed (False)."""
    passes = failures = 0
    while passes <= failures < fails:
        if probe(rate):
            passes += 1
        else:
            failures += 1
    return passes > failures


def payload_label(cell: Cell) -> str | None:
    """A payload other than stock records: "50 B raw", "mix 1x60 100x30 1000x10"."""
    if cell.payload_bytes is not None:
        return f"{cell.payload_bytes} B raw"
    if cell.mix:
        return "mix " + " ".join(f"{records}x{weight}" for records, weight in cell.mix)
    return None


def not_applicable(cell: Cell, adapter: Adapter) -> str | None:
    """Why `cell` means nothing for this pair, in one line; None when it runs."""
    if isinstance(cell.partitions, int) and cell.partitions > 1 \
            and not hasattr(adapter, "partitions"):
        return (f"{adapter.scheme} has no partitions for queuebench to set: only the plain Kafka "
                "clients' topics are created with `partitions`")
    if cell.producer_mode == "async" and not has_async_send(adapter):
        return (f"{adapter.scheme} has no asynchronous send: its library tells nothing of a "
                "message after its send returned, so async runs exactly as sync")
    return injector.not_applicable(cell.fault, adapter) if cell.fault else None


def sustained(result: Result, p99_bound_ms: float) -> dict[str, object]:
    """Did a probe of a rate search sustain its rate: every message received, p99 latency
    within the bound, and no growing backlog (no more waiting when sending ended than the
    bound lets wait at that rate, plus one)? With the reason when not."""
    m = result.measurements
    p99 = (m.get("latency_ms") or {}).get("p99")
    allowed = math.ceil((m.get("intended_rate") or 0) * p99_bound_ms / 1000) + 1
    waiting = m.get("backlog_end_of_sending")
    if result.status != "ok" or m.get("lost"):
        why = f"{result.status}, {m.get('lost')} lost"
    elif p99 is None:
        why = "no p99 latency measured"
    elif p99 > p99_bound_ms:
        why = f"p99 {p99:,.1f} ms over {p99_bound_ms:g} ms"
    elif waiting is not None and waiting > allowed:
        why = f"backlog grew: {waiting} waiting when sending ended (at most {allowed})"
    else:
        why = None
    return {"sustained": why is None, "why": why, "p99_ms": p99}


def plan_steps(plan: Plan, pairs: list[tuple[adapters.PairEntry, str]]
               ) -> Iterator[tuple[Cell, adapters.PairEntry, str, str, int]]:
    """The steps of a run, in order: each a case of a cell on a pair, variant and repeat.

    Repeats are interleaved (every case once, then every case again) so that a machine that
    slows down during the run spreads its drift over all cases instead of one.
    """
    for repeat in range(max(cell.repeats for cell in plan.cells)):
        for cell in plan.cells:
            if repeat >= cell.repeats:
                continue
            for entry, url in pairs:
                cls = adapters.adapter_class(entry)
                for variant in plan.variants or tuple(v.name for v in cls.variants):
                    for each in durability_cells(cell, entry):
                        yield each, entry, url, variant, repeat


def plan_fingerprint(plan: Plan, pairs: list[tuple[adapters.PairEntry, str]]) -> str:
    """The run's steps as a hash: a resumed run skips the steps done only if it takes the same
    ones (the same experiment files and settings, pairs, variants and repeats)."""
    steps = "\n".join(repr((cell, entry.scheme, redact(url), variant, repeat))
                      for cell, entry, url, variant, repeat in plan_steps(plan, pairs))
    return hashlib.sha256(steps.encode()).hexdigest()[:16]


def run_plan(plan: Plan, pairs: list[tuple[adapters.PairEntry, str]],
             folder: RunFolder, cluster: Cluster | None = None) -> list[Result]:
    """Every step of `plan` over `pairs` (checked by resolve_pairs and reachable_pairs) that
    `folder` has not done yet; every result in it, those of a run it resumes included."""
    folder.set_payload_sizes(_size_table(plan, pairs))
    state = PlanRun(plan, folder, cluster)
    for step, (cell, entry, url, variant, repeat) in enumerate(plan_steps(plan, pairs)):
        if step < folder.progress["steps"]:
            continue
        Interrupt.check()  # in case a library caught the KeyboardInterrupt
        state.run(cell, entry, url, variant, repeat)
        folder.step_done(state.max_rates)
    return state.results


def durability_cells(cell: Cell, entry: adapters.PairEntry) -> list[Cell]:
    """`durability: each`: the cell once per durability mode of the pair's broker; a broker
    with one mode (or none, embedded) runs it once, as it is."""
    service_name = service_of(entry.scheme)
    if cell.durability != "each" or not durability.switchable(service_name):
        return [replace(cell, durability=None)]
    return [replace(cell, durability=mode.mode) for mode in durability.modes(service_name)]


def run_one(config: ExperimentConfig, cell: Cell, adapter: Adapter,
            records: Sequence[list[StockRecord] | bytes], workdir: Path,
            cluster: Cluster | None = None) -> Result:
    """One repeat of one case; whatever goes wrong becomes an error result, never a lost run."""
    info = _pair_info(adapter)
    # One encoded sample at a time: 200 messages of 10,000 records would hold 350 MB at once.
    reason = _over_limit(adapter, (len(encode(batch, cell.format))
                                   for batch in records[:SIZE_SAMPLE]))
    if reason:
        say(f"No Go {config.label}: {reason}")
        return Result(config, "no-go", info, error=reason)
    try:
        data_adapter = injector.behind_proxy(adapter) \
            if cell.fault and cell.fault.through_proxy else None
    except QueuebenchError as exc:  # Toxiproxy down
        say(f"error {config.label}: {exc}")
        return Result(config, "error", info, error=redact(str(exc)))
    bar = tqdm(total=config.messages, desc=config.label, unit="msg", delay=2, leave=False,
               disable=None, file=sys.stderr)

    def progress(received: int) -> None:
        bar.update(received - bar.n)

    experiment = Experiment(config, cell, adapter, records, workdir, progress,
                            data_adapter=data_adapter, cluster=cluster)
    try:
        measurements = phases.run(experiment)
    except QueuebenchError as exc:
        say(f"error {config.label}: {exc}")
        return Result(config, "error", info, error=redact(str(exc)))
    except Exception as exc:  # a library's own error must become an error row, not end the run
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "error.log").write_text(redact(traceback.format_exc()))
        say(f"error {config.label}: {type(exc).__name__}: {exc} (see {workdir}/error.log)")
        return Result(config, "error", info, error=redact(f"{type(exc).__name__}: {exc}"))
    finally:
        bar.close()
        experiment.close()  # its consumers stopped first: Kafka keeps a group with members
        if not Interrupt.received:  # an interrupted run ends at once; its last queue stays
            _delete_queue(adapter, config.label)
        adapter.cleanup()
    if "broker_durability" in measurements:  # the broker's settings, beside the library's
        info["broker_durability"] = measurements.pop("broker_durability")
    say(f"{config.label}: {summary(measurements)}")
    # Cut short by its deadline: what did not arrive yet is not lost, and the row is no verdict.
    status = "incomplete" if measurements["outcome"] == "deadline" else "ok"
    return Result(config, status, info, measurements)


def _delete_queue(adapter: Adapter, label: str) -> None:
    """Every case leaves nothing on the broker, however it ended: the topics of failed and
    cut-short cases, once kept for inspection, grew to 15,075 partitions and made Kafka take
    over 120 s to start. A failed deletion is said, and is never the row's error."""
    try:
        adapter.check_reachable(REACHABLE_TIMEOUT_SEC)  # a broker that died must not hang it
        adapter.delete_queue()
    except Exception as exc:  # any library's error: the queue merely stays
        say(redact(f"{label}: its queue {adapter.queue!r} stays on the broker: {error_text(exc)}"))


def summary(m: dict[str, object]) -> str:
    parts = [f"{m['successful']}/{m['total']} received", f"{m['lost']} lost",
             f"{m['duplicates']} duplicated"]
    if m.get("consume_throughput"):
        parts.append(f"{m['consume_throughput']} msg/s consumed")
    return ", ".join(parts) + f" ({m['outcome']})"


