"""Runs a plan: every cell of every workload over every pair and variant, repeats interleaved,
into a run folder."""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from queuebench import adapters
from queuebench.adapters.base import Adapter
from queuebench.engine import phases
from queuebench.engine.common import Experiment
from queuebench.engine.environment import library_version
from queuebench.engine.results import ExperimentConfig, Result, RunFolder
from queuebench.engine.workload import Cell, OfMaxRate, Workload, cells, default_deadline
from queuebench.errors import BrokerUnreachable, QueuebenchError, UsageError
from queuebench.payloads import (
    DEFAULT_STOCK_DB_URL,
    SIZE_RECORD_COUNTS,
    StockRecord,
    encode,
    open_stock_db,
    payload_sizes,
)
from queuebench.payloads.builder import RecordBatches, record_batches
from queuebench.redact import redact
from queuebench.worker.envelope import HEADER

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
    counts = sorted({*SIZE_RECORD_COUNTS, *(cell.records for cell in plan.cells)})
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


def _over_limit(adapter: Adapter, samples: list[bytes]) -> str | None:
    limit = adapter.size_limit
    largest = max(len(p) for p in samples) + HEADER.size
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
    return {**adapter.describe(), "library_version": library_version(adapter.library),
            "broker_version": broker_version}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class PlanRun:
    """The state of one plan's run: its folder, its results so far, the stock records of each
    message count, and the drain rate each calibration reached."""

    def __init__(self, plan: Plan, folder: RunFolder) -> None:
        self.plan, self.folder = plan, folder
        self.results: list[Result] = []
        self._batches: dict[tuple[int, int], RecordBatches] = {}
        self._max_rates: dict[tuple[str, str, Cell], float | None] = {}

    def run(self, cell: Cell, entry: adapters.PairEntry, url: str, variant: str,
            repeat: int) -> Result:
        if isinstance(cell.rate, OfMaxRate):
            max_rate = self._max_rate(cell, entry, url, variant)
            if max_rate is None:
                return self._case(cell, entry, url, variant, repeat, error=(
                    "no rate to pace at: its calibration run, as fast as it goes, did not "
                    "receive every message"))
            cell = replace(cell, rate=round(cell.rate.fraction * max_rate, 1))
        return self._case(cell, entry, url, variant, repeat)

    def _max_rate(self, cell: Cell, entry: adapters.PairEntry, url: str,
                  variant: str) -> float | None:
        """The drain rate of the case as fast as it goes, measured once per run (its result is
        a row of the report like any other)."""
        unpaced = replace(cell, rate=None, repeats=1)
        key = (entry.scheme, variant, unpaced)
        if key not in self._max_rates:
            result = self._case(unpaced, entry, url, variant, repeat=0)
            clean = result.status == "ok" and not result.measurements.get("lost")
            self._max_rates[key] = result.measurements.get("drain_throughput") if clean else None
        return self._max_rates[key]

    def _case(self, cell: Cell, entry: adapters.PairEntry, url: str, variant: str,
              repeat: int, error: str | None = None) -> Result:
        cls = adapters.adapter_class(entry)
        config = ExperimentConfig(
            scenario=cell.kind, pair=entry.scheme, variant=variant, format=cell.format,
            messages=cell.messages, records=cell.records, work_ms=cell.work_ms,
            deadline_sec=0.0 if error else default_deadline(
                cell, cls.find_variant(variant).redelivery_sec),
            wait_sec=cell.wait_sec if cell.start == "after" else None, stop=cell.stop,
            repeat=repeat, workload=cell.workload, consumers=cell.processes,
            concurrency=cell.concurrency, producers=cell.producers,
            producer_mode=cell.producer_mode, fail_fraction=cell.fail_fraction,
            rate=None if isinstance(cell.rate, OfMaxRate) else cell.rate)
        number = len(self.results)
        adapter = cls(url, queue=f"qb-{self.folder.path.name[:16].lower()}-{number:03d}",
                      variant=variant)
        if error:
            say(f"error {config.label}: {error}")
            result = Result(config, "error", _pair_info(adapter), error=error)
        else:
            key = (cell.records, cell.messages)
            if key not in self._batches:
                self._batches[key] = record_batches(self.plan.stock_db_url, *key)
            result = run_one(config, cell, adapter, self._batches[key], self.folder.path /
                             "experiments" / f"{number:03d}-{_slug(config.label)}")
        self.folder.add(result)
        self.results.append(result)
        return result


def run_plan(plan: Plan, pairs: list[tuple[adapters.PairEntry, str]],
             folder: RunFolder) -> list[Result]:
    """Every cell of `plan` over `pairs` (checked by resolve_pairs and reachable_pairs).

    Repeats are interleaved (every case once, then every case again) so that a machine that
    slows down during the run spreads its drift over all cases instead of one.
    """
    folder.set_payload_sizes(_size_table(plan, pairs))
    state = PlanRun(plan, folder)
    for repeat in range(max(cell.repeats for cell in plan.cells)):
        for cell in plan.cells:
            if repeat >= cell.repeats:
                continue
            for entry, url in pairs:
                cls = adapters.adapter_class(entry)
                for variant in plan.variants or tuple(v.name for v in cls.variants):
                    state.run(cell, entry, url, variant, repeat)
    return state.results


def run_one(config: ExperimentConfig, cell: Cell, adapter: Adapter,
            records: Sequence[list[StockRecord]], workdir: Path) -> Result:
    """One repeat of one case; whatever goes wrong becomes an error result, never a lost run."""
    info = _pair_info(adapter)
    reason = _over_limit(adapter, [encode(batch, cell.format) for batch in records[:SIZE_SAMPLE]])
    if reason:
        say(f"No Go {config.label}: {reason}")
        return Result(config, "no-go", info, error=reason)
    bar = tqdm(total=config.messages, desc=config.label, unit="msg", delay=2, leave=False,
               disable=None, file=sys.stderr)

    def progress(received: int) -> None:
        bar.update(received - bar.n)

    experiment = Experiment(config, cell, adapter, records, workdir, progress)
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
        experiment.close()
        adapter.cleanup()
    say(f"{config.label}: {summary(measurements)}")
    # Cut short by its deadline: what did not arrive yet is not lost, and the row is no verdict.
    status = "incomplete" if measurements["outcome"] == "deadline" else "ok"
    return Result(config, status, info, measurements)


def summary(m: dict[str, object]) -> str:
    parts = [f"{m['successful']}/{m['total']} received", f"{m['lost']} lost",
             f"{m['duplicates']} duplicated"]
    if m.get("consume_throughput"):
        parts.append(f"{m['consume_throughput']} msg/s consumed")
    return ", ".join(parts) + f" ({m['outcome']})"


