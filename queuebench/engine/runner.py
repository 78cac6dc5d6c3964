"""Runs a plan: every experiment over every pair, variant and payload format, into a run folder."""

from __future__ import annotations

import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from queuebench import adapters
from queuebench.adapters.base import Adapter
from queuebench.engine import reliability, throughput
from queuebench.engine.common import Experiment
from queuebench.engine.environment import library_version
from queuebench.engine.results import ExperimentConfig, Result, RunFolder
from queuebench.errors import BrokerUnreachable, QueuebenchError, UsageError
from queuebench.payloads import (
    DEFAULT_STOCK_DB_URL,
    FORMATS,
    SIZE_RECORD_COUNTS,
    PayloadBuilder,
    open_stock_db,
    payload_sizes,
)
from queuebench.redact import redact
from queuebench.worker.envelope import HEADER

SCENARIOS = {"reliability": reliability.run, "throughput": throughput.run}
# The seed's sizes, smaller for throughput so a demo ends in minutes (the seed used 10,000).
DEFAULT_MESSAGES = {"reliability": 100, "throughput": 1_000}
# Per-message work: reliability needs a stop to land mid-task; throughput measures the queue.
DEFAULT_WORK_MS = {"reliability": 20.0, "throughput": 0.0}
REACHABLE_TIMEOUT_SEC = 10.0


@dataclass(frozen=True)
class Plan:
    experiments: tuple[str, ...]
    pairs: tuple[str, ...]  # pair names, group names or full pair URLs
    formats: tuple[str, ...] = ("json",)
    stops: tuple[str, ...] = reliability.STOP_MODES
    variants: tuple[str, ...] = ()  # empty: every variant each pair declares
    messages: int | None = None  # None: DEFAULT_MESSAGES of the experiment
    records: int = 100
    work_ms: float | None = None  # None: DEFAULT_WORK_MS of the experiment
    wait_sec: float = 5.0
    deadline_sec: float | None = None  # None: scaled to the message count and work
    stock_db_url: str = DEFAULT_STOCK_DB_URL
    reachable_only: bool = False

    def __post_init__(self) -> None:
        for name, value in (("--messages", self.messages), ("--records", self.records)):
            if value is not None and value < 1:
                raise UsageError(f"{name} must be a positive number, got {value}")
        for name, values, known in (("experiment", self.experiments, SCENARIOS),
                                    ("format", self.formats, FORMATS),
                                    ("stop mode", self.stops, reliability.STOP_MODES)):
            for value in values:
                if value not in known:
                    raise UsageError(f"unknown {name} {value!r}; choose from {', '.join(known)}")

    def messages_for(self, scenario: str) -> int:
        return DEFAULT_MESSAGES[scenario] if self.messages is None else self.messages

    def work_ms_for(self, scenario: str) -> float:
        return DEFAULT_WORK_MS[scenario] if self.work_ms is None else self.work_ms

    def deadline_for(self, scenario: str, redelivery_sec: float = 0.0) -> float:
        if self.deadline_sec is not None:
            return self.deadline_sec
        # A minute for start-ups, the variant's redelivery wait, three times the work, and 50 ms a
        # message for the queue itself (RQ's forking worker manages about 25 a second).
        per_message = 3 * self.work_ms_for(scenario) / 1000 + 0.05
        return 60 + redelivery_sec + self.messages_for(scenario) * per_message


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
    counts = sorted({*SIZE_RECORD_COUNTS, plan.records})
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


def _over_limit(adapter: Adapter, payloads: list[bytes]) -> str | None:
    limit = adapter.size_limit
    largest = max(len(p) for p in payloads) + HEADER.size
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


def run_plan(plan: Plan, pairs: list[tuple[adapters.PairEntry, str]],
             folder: RunFolder) -> list[Result]:
    """Every experiment of `plan` over `pairs` (checked by resolve_pairs and reachable_pairs)."""
    folder.set_payload_sizes(_size_table(plan, pairs))
    results = []
    most = max(plan.messages_for(scenario) for scenario in plan.experiments)
    for fmt in plan.formats:
        started = time.perf_counter()
        with PayloadBuilder(stock_db_url=plan.stock_db_url, fmt=fmt, records=plan.records) as b:
            payloads = b.build_many(most)
        say(f"built {len(payloads)} {fmt} payloads of {plan.records} records "
            f"in {time.perf_counter() - started:.2f} s")
        for entry, url in pairs:
            cls = adapters.adapter_class(entry)
            variants = plan.variants or tuple(v.name for v in cls.variants)
            for variant in variants:
                for scenario in plan.experiments:
                    stops = plan.stops if scenario == "reliability" else (None,)
                    for stop in stops:
                        config = ExperimentConfig(
                            scenario=scenario, pair=entry.scheme, variant=variant, format=fmt,
                            messages=plan.messages_for(scenario), records=plan.records,
                            work_ms=plan.work_ms_for(scenario),
                            deadline_sec=round(plan.deadline_for(scenario, cls.find_variant(
                                variant).redelivery_sec), 1),
                            wait_sec=plan.wait_sec if scenario == "reliability" else None,
                            stop=stop)
                        queue = f"qb-{folder.path.name[:16].lower()}-{len(results):03d}"
                        adapter = cls(url, queue=queue, variant=variant)
                        result = run_one(config, adapter, payloads[:config.messages],
                                         folder.path / "experiments" / f"{len(results):03d}-"
                                         f"{_slug(config.label)}")
                        folder.add(result)
                        results.append(result)
    return results


def run_one(config: ExperimentConfig, adapter: Adapter, payloads: list[bytes],
            workdir: Path) -> Result:
    """One experiment; whatever goes wrong becomes an error result, never a lost run."""
    info = _pair_info(adapter)
    reason = _over_limit(adapter, payloads)
    if reason:
        say(f"No Go {config.label}: {reason}")
        return Result(config, "no-go", info, error=reason)
    bar = tqdm(total=config.messages, desc=config.label, unit="msg", delay=2, leave=False,
               disable=None, file=sys.stderr)

    def progress(received: int) -> None:
        bar.update(received - bar.n)

    experiment = Experiment(config, adapter, payloads, workdir, progress)
    try:
        measurements = SCENARIOS[config.scenario](experiment)
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


