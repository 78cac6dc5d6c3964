"""What every part of the report stands on: results grouped into cases, their figures across
repeats, which rows are complete, and how a figure is written.

A case (a config without its `repeat`) may have run several times. Every repeat is kept in
results.json; figures stand on the median of a case's complete repeats with their spread, and a
verdict on losses counts every repeat. A figure that was not measured is "n/a", never filled in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from statistics import median

from queuebench.ceilings import Ceiling, nearest
from queuebench.engine.metrics import merged_latency_ms
from queuebench.engine.results import case_key
from queuebench.worker.envelope import HEADER

NA = "n/a"
DASH = "\u2013"  # between the lowest and the highest repeat
# A figure whose repeats spread (highest - lowest) over more than this share of its median is
# flagged in its cell and named in the answer.
SPREAD_LIMIT = 0.10
UNSTABLE = " \u26a0"

def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(map(table_cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def table_cell(cell: object) -> str:
    """A cell's text that stays one cell: a pipe would start another column, a line break
    another row (an error row's worker log tail holds both)."""
    return NA if cell is None else str(cell).replace("\n", " ").replace("|", "\\|")


# A consume rate measured over less than this is shown but never ranked: too short to mean much.
MIN_RANKED_SEC = 1.0


def is_complete(result: dict) -> bool:
    """Measured to the end. A row cut short by its deadline is status "incomplete" (or, in files
    written before the runner said so, "ok" with outcome "deadline"): what it had not received
    yet is not lost, and it is no evidence for a verdict."""
    return result["status"] == "ok" and result["measurements"].get("outcome") != "deadline"


def measured_rows(results: list[dict], scenario: str) -> list[dict]:
    """The rows with figures to show, complete or cut short (not no-go, not errors)."""
    return [r for r in results if r["config"]["scenario"] == scenario
            and r["status"] in ("ok", "incomplete")]


def complete_rows(results: list[dict], scenario: str) -> list[dict]:
    """The complete rows: the only ones a verdict is drawn from."""
    return [r for r in measured_rows(results, scenario) if is_complete(r)]


def repeat_of(result: dict) -> int:
    return result["config"].get("repeat") or 0  # files of schema 1 lack it: run once


def repeated_cases(results: list[dict]) -> set[str]:
    """The cases that ran more than once."""
    return {key for key, n in Counter(map(case_key, results)).items() if n > 1}


def repeat_tag(result: dict, repeated: set[str]) -> str:
    """"repeat 2" for the second run of a case that ran more than once, else nothing."""
    return f"repeat {repeat_of(result) + 1}" if case_key(result) in repeated else ""


@dataclass(frozen=True)
class Figure:
    """A case's figure: the median of its repeats (or a percentile of their latencies merged),
    and the lowest and highest repeat."""
    value: float | None
    low: float | None = None
    high: float | None = None
    count: int = 0

    @property
    def unstable(self) -> bool:
        return (self.count > 1 and self.value is not None
                and self.high - self.low > SPREAD_LIMIT * abs(self.value))

    def spread(self) -> str:
        """The spread as a share of the value: "23%"."""
        if not self.value:
            return f"{shown(float(self.low))}{DASH}{shown(float(self.high))} around 0"
        return f"{(self.high - self.low) / abs(self.value):.0%}"

    def cell(self, digits: int = 2) -> object:
        """The value with the lowest and highest repeat in brackets, flagged when unstable; a
        lone value as it is."""
        if self.value is None or self.count < 2:
            return shown(self.value, digits)
        return (f"{shown(float(self.value), digits)} ({shown(float(self.low), digits)}{DASH}"
                f"{shown(float(self.high), digits)})" + (UNSTABLE if self.unstable else ""))


def figure_of(values: list) -> Figure:
    values = [v for v in values if v is not None]
    return Figure(median(values), min(values), max(values), len(values)) if values else Figure(None)


class Case:
    """Every repeat of one case, in repeat order."""

    def __init__(self, results: list[dict]) -> None:
        self.results = sorted(results, key=repeat_of)
        self.first = self.results[0]
        self.config = self.first["config"]
        self.complete = [r for r in self.results if is_complete(r)]
        self.measured = [r for r in self.results if r["status"] in ("ok", "incomplete")]
        # Figures stand on the repeats measured to the end; on those cut short only if none was.
        self.basis = self.complete or self.measured

    @property
    def repeated(self) -> bool:
        return len(self.results) > 1

    def values(self, key: str, results: list[dict] | None = None) -> list:
        return [r["measurements"].get(key) for r in (self.basis if results is None else results)
                if r["measurements"].get(key) is not None]

    def figure(self, key: str) -> Figure:
        return figure_of(self.values(key))

    def broker_ceiling(self, ceilings: Sequence[Ceiling]) -> Ceiling | None:
        """Of `ceilings`, its broker's own at about this case's message size (the envelope
        counted, as the broker's tools send it); None when none was measured that near."""
        size = self.figure("payload_bytes").value
        broker = self.config["pair"].partition("+")[2]
        return nearest(list(ceilings), broker, int(size + HEADER.size)) if size else None

    @cached_property
    def merged_latency(self) -> dict | None:
        """The latency summary of every repeat's histogram merged, if every repeat kept one."""
        histograms = [r["measurements"].get("latency_histogram") for r in self.basis]
        return merged_latency_ms(histograms) if all(histograms) else None

    def latency(self, key: str) -> Figure:
        """A latency percentile over the repeats: of their histograms merged when every repeat
        kept one, else the median of the repeats' own; the spread is the repeats' own."""
        per_repeat = figure_of([(r["measurements"].get("latency_ms") or {}).get(key)
                              for r in self.basis])
        if per_repeat.value is None or not self.merged_latency:
            return per_repeat
        return Figure(self.merged_latency[key], per_repeat.low, per_repeat.high,
                      per_repeat.count)

    def figures(self) -> dict[str, tuple[Figure, int]]:
        """The throughput figures shown with their spread, by column, with their digits."""
        return {"produce msg/s": (self.figure("produce_throughput"), 1),
                "consume msg/s": (self.figure("consume_throughput"), 1),
                "consume MB/s": (self.figure("consume_mb_s"), 3),
                **{f"{p} ms": (self.latency(p), 2) for p in ("p50", "p95", "p99")}}

    def repeats(self) -> str:
        return f"{len(self.complete)} complete of {len(self.results)}"


def cases_of(results: list[dict], scenario: str | None = None) -> list[Case]:
    """The results grouped by case, in the order each case first appears."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        if scenario is None or r["config"]["scenario"] == scenario:
            groups.setdefault(case_key(r), []).append(r)
    return [Case(group) for group in groups.values()]


def ended_by(result: dict) -> object:
    outcome = result["measurements"].get("outcome")
    return outcome if is_complete(result) else f"incomplete ({outcome or result['status']})"


def corrupt_count(result: dict) -> int:
    return result["measurements"].get("corrupt") or 0  # files before the count lack it


def pair_name(result: dict) -> str:
    config = result["config"]
    variant = "" if config["variant"] == "default" else f" [{config['variant']}]"
    return f"{config['pair']}{variant}"


def row_name(result: dict) -> str:
    """The pair and variant, and what else sets this case apart: a paced rate, a fleet."""
    config = result["config"]
    rate = config.get("rate")
    paced = "" if rate is None else (f" @ {shown(float(rate), 0)} msg/s"
                                     if isinstance(rate, int | float) else " @ staged rate")
    fleet = f" x{config['consumers']} consumers" if config.get("consumers", 1) != 1 else ""
    each = (f" x{config['concurrency']} concurrency" if config.get("concurrency", 1) != 1
            else "")
    producers = (f" x{config['producers']} producers" if config.get("producers", 1) != 1
                 else "")
    mode = (f" ({config['producer_mode']} producer)"
            if config.get("producer_mode", "sync") != "sync" else "")
    failing = (f" failing {config['fail_fraction']:.0%}" if config.get("fail_fraction") else "")
    extras = "".join(f" {text}" for text in (
        config.get("payload"),
        f"{config['partitions']} partitions" if (config.get("partitions") or 1) > 1 else None,
        f"in flight {config['in_flight']}" if config.get("in_flight") else None) if text)
    return f"{pair_name(result)}{paced}{fleet}{each}{producers}{mode}{failing}{extras}"


def shown(value: object, digits: int = 2) -> object:
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def latency_cell(m: dict, key: str) -> object:
    return shown(m["latency_ms"].get(key)) if m.get("latency_ms") else None


def num_or_na(value: object, digits: int = 2) -> str:
    return NA if value is None else str(shown(value, digits))


def is_clean(case: Case) -> bool:
    """Every repeat measured to the end, every message received unchanged, a rate measured."""
    return all(is_complete(r) and r["measurements"].get("consume_throughput")
               and not r["measurements"].get("lost") and not corrupt_count(r) for r in case.results)


def spoiled_reasons(case: Case) -> str:
    """Why a case is not clean: how many of its repeats failed, were cut short, lost..."""
    why: Counter[str] = Counter()
    for r in case.results:
        m = r["measurements"]
        why["failed" if r["status"] not in ("ok", "incomplete") else
            "cut short" if not is_complete(r) else "lost messages" if m.get("lost") else
            "changed bytes" if corrupt_count(r) else
            "measured no rate" if not m.get("consume_throughput") else "clean"] += 1
    del why["clean"]
    return ", ".join(f"{n} of {len(case.results)} repeats {reason}" for reason, n in why.items())


def case_rate(case: Case) -> float:
    return case.figure("consume_throughput").value


def is_ranked(case: Case) -> bool:
    """Every repeat consumed for long enough to rank its rate."""
    return all((r["measurements"].get("time_to_consume_sec") or 0) >= MIN_RANKED_SEC
               for r in case.results)


def span(values: list, digits: int = 2) -> object:
    """One value, or the lowest and highest: "9,998-10,000"."""
    values = sorted({v for v in values if v is not None})
    if len(values) < 2:
        return shown(values[0], digits) if values else None
    return f"{shown(values[0], digits)}{DASH}{shown(values[-1], digits)}"


def recorded_ceilings(rows: Iterable[dict]) -> list[Ceiling]:
    """The broker ceilings a run recorded beside its results (their raw lines left out)."""
    return [Ceiling(**row, settings={}, raw={}) for row in rows]


def machine_of(part: dict) -> str:
    """The machine a part ran on, as its manifest says (parts stamped before the manifest
    had a yardstick say nothing)."""
    said = [part["os"]] if part.get("os") else []
    if (trips := part.get("json_round_trips_per_sec")) is not None:
        said.append(f"{trips:,} JSON round trips/s")
    if (fsync := part.get("fsync_4k_ms")) is not None:
        said.append(f"fsync {fsync:g} ms")
    return f" ({', '.join(said)})" if said else ""


def resumed_text(resumed: list[dict]) -> str:
    """When a run that stopped went on, on which machine: the rows after it were measured
    then, and maybe on another day or machine."""
    return "".join(f"; resumed {again['at'][:16].replace('T', ' ')} UTC on {again.get('host')}"
                   f"{machine_of(again)}" for again in resumed)


def measured_by(cases: list[Case]) -> list[str]:
    """In a merged report, which run measured a section's rows (when it started, at which
    commit, on which machine, which pairs): rows of different days, machines and loads must not
    pass as one run's. Cases merged before results kept their run are counted apart."""
    parts: dict[tuple[str, str, str, str], list[str]] = {}
    unknown = 0
    for case in cases:
        if not (part := case.first.get("part")):
            unknown += 1
            continue
        key = (part["started_at"], part["run"], part["commit"] or "?",
               machine_of(part) + resumed_text(part.get("resumed", [])))
        if (name := pair_name(case.first)) not in (names := parts.setdefault(key, [])):
            names.append(name)
    if not parts:
        return []
    lines = [f"- {started[:16].replace('T', ' ')} UTC, `{run}` at {commit}{machine}: "
             f"{', '.join(names)}" for (started, run, commit, machine), names
             in sorted(parts.items())]
    if unknown:
        lines.insert(0, f"- {unknown} case{'s' * (unknown > 1)}: runs merged before each "
                        "result kept its run (the command above lists them all)")
    return ["Measured by:", "", *lines, ""]
