"""Renders a run's results.json as the markdown report a person reads to choose.

A separate pass over the results: it never imports an adapter, so any results file can be
re-rendered anywhere. The answer comes first, then the tables, then the manifest. A figure that
was not measured is shown as "n/a", never filled in.

A case (a config without its `repeat`) may have run several times. Every repeat is kept in
results.json; the throughput table and the fastest pair stand on the median of a case's complete
repeats with their spread, and a verdict on losses counts every repeat. A case run once renders
as it always did.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from statistics import median

from queuebench.engine.metrics import merged_latency_ms

NA = "n/a"
DASH = "\u2013"  # between the lowest and the highest repeat
# A figure whose repeats spread (highest - lowest) over more than this share of its median is
# flagged in its cell and named in the answer.
SPREAD_LIMIT = 0.10
UNSTABLE = " \u26a0"

# Seed 003's hand-made figures (AWS-hosted brokers, 2023): (pair, format, scenario, messages) ->
# (time to produce s, time to consume s incl. consumer start-up). Shown beside ours, never mixed.
SEED_FIGURES = {
    ("celery+sqs", "json", "reliability", 100): (4.69, 10.18),
    ("celery+sqs", "json", "throughput", 10_000): (485.48, 520.18),
    ("kafka-python+kafka", "json", "reliability", 100): (3.52, 9.23),
    ("kafka-python+kafka", "json", "throughput", 10_000): (303.30, 400.54),
    ("kafka-python+kafka", "protobuf", "reliability", 100): (2.91, 10.66),
    ("kafka-python+kafka", "protobuf", "throughput", 10_000): (262.09, 530.83),
    ("rq+redis", "json", "reliability", 100): (2.40, 9.13),  # after the seed's import fix
}


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(NA if cell is None else str(cell) for cell in row) + " |"
              for row in rows]
    return "\n".join(lines)


# A consume rate measured over less than this is shown but never ranked: too short to mean much.
MIN_RANKED_SEC = 1.0


def _complete(result: dict) -> bool:
    """Measured to the end. A row cut short by its deadline is status "incomplete" (or, in files
    written before the runner said so, "ok" with outcome "deadline"): what it had not received
    yet is not lost, and it is no evidence for a verdict."""
    return result["status"] == "ok" and result["measurements"].get("outcome") != "deadline"


def _measured(results: list[dict], scenario: str) -> list[dict]:
    """The rows with figures to show, complete or cut short (not no-go, not errors)."""
    return [r for r in results if r["config"]["scenario"] == scenario
            and r["status"] in ("ok", "incomplete")]


def _ok(results: list[dict], scenario: str) -> list[dict]:
    """The complete rows: the only ones a verdict is drawn from."""
    return [r for r in _measured(results, scenario) if _complete(r)]


def _repeat(result: dict) -> int:
    return result["config"].get("repeat") or 0  # files of schema 1 lack it: run once


def _case_key(result: dict) -> str:
    """A case is a config without its repeat."""
    return json.dumps({k: v for k, v in result["config"].items() if k != "repeat"},
                      sort_keys=True)


def _repeated(results: list[dict]) -> set[str]:
    """The cases that ran more than once."""
    return {key for key, n in Counter(map(_case_key, results)).items() if n > 1}


def _repeat_tag(result: dict, repeated: set[str]) -> str:
    """"repeat 2" for the second run of a case that ran more than once, else nothing."""
    return f"repeat {_repeat(result) + 1}" if _case_key(result) in repeated else ""


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
            return f"{_fmt(float(self.low))}{DASH}{_fmt(float(self.high))} around 0"
        return f"{(self.high - self.low) / abs(self.value):.0%}"

    def cell(self, digits: int = 2) -> object:
        """The value with the lowest and highest repeat in brackets, flagged when unstable; a
        lone value as it is."""
        if self.value is None or self.count < 2:
            return _fmt(self.value, digits)
        return (f"{_fmt(float(self.value), digits)} ({_fmt(float(self.low), digits)}{DASH}"
                f"{_fmt(float(self.high), digits)})" + (UNSTABLE if self.unstable else ""))


def _figure(values: list) -> Figure:
    values = [v for v in values if v is not None]
    return Figure(median(values), min(values), max(values), len(values)) if values else Figure(None)


class Case:
    """Every repeat of one case, in repeat order."""

    def __init__(self, results: list[dict]) -> None:
        self.results = sorted(results, key=_repeat)
        self.first = self.results[0]
        self.config = self.first["config"]
        self.complete = [r for r in self.results if _complete(r)]
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
        return _figure(self.values(key))

    @cached_property
    def merged_latency(self) -> dict | None:
        """The latency summary of every repeat's histogram merged, if every repeat kept one."""
        histograms = [r["measurements"].get("latency_histogram") for r in self.basis]
        return merged_latency_ms(histograms) if all(histograms) else None

    def latency(self, key: str) -> Figure:
        """A latency percentile over the repeats: of their histograms merged when every repeat
        kept one, else the median of the repeats' own; the spread is the repeats' own."""
        per_repeat = _figure([(r["measurements"].get("latency_ms") or {}).get(key)
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


def _cases(results: list[dict], scenario: str | None = None) -> list[Case]:
    """The results grouped by case, in the order each case first appears."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        if scenario is None or r["config"]["scenario"] == scenario:
            groups.setdefault(_case_key(r), []).append(r)
    return [Case(group) for group in groups.values()]


def _ended_by(result: dict) -> object:
    outcome = result["measurements"].get("outcome")
    return outcome if _complete(result) else f"incomplete ({outcome or result['status']})"


def _corrupt(result: dict) -> int:
    return result["measurements"].get("corrupt") or 0  # files before the count lack it


def _pair_name(result: dict) -> str:
    config = result["config"]
    variant = "" if config["variant"] == "default" else f" [{config['variant']}]"
    return f"{config['pair']}{variant}"


def _row_name(result: dict) -> str:
    """The pair and variant, and what else sets this case apart: a paced rate, a fleet."""
    config = result["config"]
    rate = config.get("rate")
    paced = "" if rate is None else (f" @ {_fmt(float(rate), 0)} msg/s"
                                     if isinstance(rate, int | float) else " @ staged rate")
    fleet = f" x{config['consumers']} consumers" if config.get("consumers", 1) != 1 else ""
    each = (f" x{config['concurrency']} concurrency" if config.get("concurrency", 1) != 1
            else "")
    producers = (f" x{config['producers']} producers" if config.get("producers", 1) != 1
                 else "")
    mode = (f" ({config['producer_mode']} producer)"
            if config.get("producer_mode", "sync") != "sync" else "")
    failing = (f" failing {config['fail_fraction']:.0%}" if config.get("fail_fraction") else "")
    return f"{_pair_name(result)}{paced}{fleet}{each}{producers}{mode}{failing}"


def _fmt(value: object, digits: int = 2) -> object:
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def _latency(m: dict, key: str) -> object:
    return _fmt(m["latency_ms"].get(key)) if m.get("latency_ms") else None


def _kill_cost(by_pair: dict[str, list[dict]], names: list[str]) -> str:
    """What surviving a kill cost in time: consume time after a kill against a graceful stop
    (the median of each stop's repeats)."""
    costs = []
    for name in names:
        fmt = by_pair[name][0]["config"]["format"]
        runs: dict[str, list[float]] = {}
        for r in by_pair[name]:
            if r["config"]["format"] == fmt and (
                    sec := r["measurements"]["time_to_consume_sec"]) is not None:
                runs.setdefault(r["config"]["stop"], []).append(sec)
        seconds = {stop: median(values) for stop, values in runs.items()}
        if seconds.get("kill") and seconds.get("graceful"):
            counts = sorted({len(values) for values in runs.values()})
            repeats = (f", medians of {' and '.join(map(str, counts))} repeats"
                       if counts[-1] > 1 else "")
            costs.append(f"{name} {_fmt(seconds['kill'], 1)} s after a kill against "
                         f"{_fmt(seconds['graceful'], 1)} s after a graceful stop "
                         f"({fmt}{repeats})")
    return f" Time to consume everything: {'; '.join(costs)}." if costs else ""


def _stop_scope(stops: set[str], cut: set[str]) -> tuple[str | None, str]:
    """What a clean record covers: (None, ...) for graceful stops and kills both measured to the
    end, else (a label, the claim narrowed to the stops that ran)."""
    if {"graceful", "kill"} <= stops:
        return None, "in any stop or kill"
    if "graceful" in stops:
        why = "kill cut short" if "kill" in cut else "not killed in this run"
        return "graceful stops only", f"when stopped gracefully ({why})"
    why = "graceful stop cut short" if "graceful" in cut else "not stopped gracefully in this run"
    return "kills only", f"when killed ({why})"


def _resilience(results: list[dict]) -> list[str]:
    """Most resilient, duplicates, losses: from complete reliability rows only."""
    by_pair: dict[str, list[dict]] = {}
    for r in _ok(results, "reliability"):
        by_pair.setdefault(_row_name(r), []).append(r)
    cut: dict[str, set[str]] = {}
    for r in _measured(results, "reliability"):
        if not _complete(r):
            cut.setdefault(_row_name(r), set()).add(r["config"]["stop"])
    scope = {name: _stop_scope({r["config"]["stop"] for r in rs}, cut.get(name, set()))
             for name, rs in by_pair.items()}
    losses = {name: (sum(r["measurements"].get("lost") or 0 for r in rs),
                     sum(r["measurements"].get("duplicates") or 0 for r in rs),
                     sum(_corrupt(r) for r in rs))
              for name, rs in by_pair.items()}
    lines = []
    # A clean record over repeats of which some did not finish stands on fewer: it says so.
    finished: dict[str, list[int]] = {}
    for case in _cases(results, "reliability"):
        if case.repeated:
            count = finished.setdefault(_row_name(case.first), [0, 0])
            count[0] += len(case.complete)
            count[1] += len(case.results)
    # Grouped by the stops that ran: a pair never killed cannot claim to survive a kill.
    groups: dict[tuple[str | None, str], list[str]] = {}
    for name, (lost, dup, corrupt) in losses.items():
        if lost == dup == corrupt == 0:
            groups.setdefault(scope[name], []).append(name)

    def evidence(name: str) -> str:
        done, ran = finished.get(name, (0, 0))
        return name + (f" ({done} of {ran} repeats finished)" if done < ran else "")

    for (label, claim), names in sorted(groups.items(), key=lambda g: g[0][0] is not None):
        title = "Most resilient" + (f" ({label})" if label else "")
        lines.append(f"- **{title}:** {', '.join(map(evidence, names))}: no message lost or "
                     f"duplicated {claim}."
                     + (_kill_cost(by_pair, names) if label is None else ""))
    no_loss = [n for n, (lost, dup, _) in losses.items() if lost == 0 and dup > 0]
    if no_loss:
        lines.append("- **No loss, but duplicates:** " + "; ".join(
            f"{n} ({losses[n][1]} duplicated" + (f"; {scope[n][0]})" if scope[n][0] else ")")
            for n in no_loss) + ".")
    lossy = [n for n, (lost, _, _) in losses.items() if lost > 0]
    if lossy:
        runs_of = Counter(map(_case_key, results))  # every repeat of a case, finished or not
        details = []
        for name in lossy:
            # A pair that lost in any repeat loses: each case says in how many of its repeats.
            parts = []
            for case in _cases(by_pair[name]):
                runs = [r for r in case.results if r["measurements"].get("lost")]
                if not runs:
                    continue
                lost = sorted({r["measurements"]["lost"] for r in runs})
                count = f"{lost[0]}" if len(lost) == 1 else f"{lost[0]}{DASH}{lost[-1]}"
                part = (f"{count} of {runs[0]['measurements']['total']} on "
                        f"{case.config['stop']} ({case.config['format']})")
                if (ran := runs_of[_case_key(case.first)]) > 1:
                    finished = "" if ran == len(case.results) else " complete"
                    part += f" in {len(runs)} of {len(case.results)}{finished} repeats"
                parts.append(part)
            details.append(f"{name}: " + ", ".join(parts))
        lines.append("- **Loses messages:** " + "; ".join(details) + ".")
    return lines


def _num(value: object, digits: int = 2) -> str:
    return NA if value is None else str(_fmt(value, digits))


def _clean(case: Case) -> bool:
    """Every repeat measured to the end, every message received unchanged, a rate measured."""
    return all(_complete(r) and r["measurements"].get("consume_throughput")
               and not r["measurements"].get("lost") and not _corrupt(r) for r in case.results)


def _spoiled(case: Case) -> str:
    """Why a case is not clean: how many of its repeats failed, were cut short, lost..."""
    why: Counter[str] = Counter()
    for r in case.results:
        m = r["measurements"]
        why["failed" if r["status"] not in ("ok", "incomplete") else
            "cut short" if not _complete(r) else "lost messages" if m.get("lost") else
            "changed bytes" if _corrupt(r) else
            "measured no rate" if not m.get("consume_throughput") else "clean"] += 1
    del why["clean"]
    return ", ".join(f"{n} of {len(case.results)} repeats {reason}" for reason, n in why.items())


def _case_rate(case: Case) -> float:
    return case.figure("consume_throughput").value


def _ranked(case: Case) -> bool:
    """Every repeat consumed for long enough to rank its rate."""
    return all((r["measurements"].get("time_to_consume_sec") or 0) >= MIN_RANKED_SEC
               for r in case.results)


def _behind(m: dict) -> str:
    """The count and the time a consume rate stands on."""
    return f"{_num(m.get('successful'))} messages in {_num(m.get('time_to_consume_sec'), 1)} s"


def _span(values: list, digits: int = 2) -> object:
    """One value, or the lowest and highest: "9,998-10,000"."""
    values = sorted({v for v in values if v is not None})
    if len(values) < 2:
        return _fmt(values[0], digits) if values else None
    return f"{_fmt(values[0], digits)}{DASH}{_fmt(values[-1], digits)}"


def _rate(case: Case, consumed: str) -> str:
    """The consume rate a verdict stands on, with the count and the time behind it: with
    repeats, their median and spread."""
    if not case.repeated:
        m = case.first["measurements"]
        return f"{_fmt(m['consume_throughput'], 1)} msg/s{consumed} ({_behind(m)})"
    rate, seconds = case.figure("consume_throughput"), case.figure("time_to_consume_sec")
    return (f"{_fmt(float(rate.value), 1)} msg/s{consumed} (median of {rate.count} repeats, "
            f"{_fmt(float(rate.low), 1)}{DASH}{_fmt(float(rate.high), 1)}"
            f"{UNSTABLE if rate.unstable else ''}; {_span(case.values('successful'))} messages "
            f"in a median {_num(seconds.value and float(seconds.value), 1)} s)")


def _too_short(case: Case) -> str:
    if not case.repeated:
        m = case.first["measurements"]
        seconds = m.get("time_to_consume_sec")
        over = (f"over {_fmt(seconds, 1 if seconds >= 0.1 else 3)} s" if seconds
                else "over an unrecorded time")
        return (f"{_row_name(case.first)}, {_fmt(m['consume_throughput'], 1)} msg/s measured "
                f"{over}, too short to rank")
    seconds = min(r["measurements"].get("time_to_consume_sec") or 0 for r in case.results)
    over = (f"over as little as {_fmt(seconds, 1 if seconds >= 0.1 else 3)} s in a repeat"
            if seconds else "over an unrecorded time in a repeat")
    return (f"{_row_name(case.first)}, {_fmt(float(_case_rate(case)), 1)} msg/s (median of "
            f"{len(case.results)} repeats) measured {over}, too short to rank")


def _produced_and_p99(case: Case) -> str:
    if not case.repeated:
        m = case.first["measurements"]
        return (f"{_num(m.get('produce_throughput'), 1)} msg/s produced, "
                f"p99 latency {_latency(m, 'p99') or NA} ms")
    produced, p99 = case.figure("produce_throughput"), case.latency("p99")
    merged = "; p99 of every repeat's latencies together" if case.merged_latency else ""
    return (f"{_num(produced.value and float(produced.value), 1)} msg/s produced, p99 latency "
            f"{_num(p99.value and float(p99.value))} ms (medians of the repeats{merged})")


def _fastest(results: list[dict]) -> list[str]:
    """Fastest per format (and per broker): cases whose every repeat was complete and received
    every message unchanged, by their median consume rate, ranked only where every repeat
    consumed for at least MIN_RANKED_SEC; the shorter ones are named apart, and so is a case
    run several times that is left out for one bad repeat."""
    lines = []
    # A paced case measures latency at a rate someone chose, not how fast the pair can go.
    cases = [case for case in _cases(results, "throughput")
             if case.measured and case.config.get("rate") is None]
    for fmt in sorted({case.config["format"] for case in cases}):
        own_format = [case for case in cases if case.config["format"] == fmt]
        runs = [case for case in own_format if _clean(case)]
        spoiled = "; ".join(f"{_row_name(case.first)} ({_spoiled(case)})" for case in own_format
                            if case.repeated and not _clean(case))
        spoiled = f" Not ranked, as not every repeat ended clean: {spoiled}." if spoiled else ""
        if not runs:
            lines.append(f"- **Fastest ({fmt}):** none ranked: no run received every message "
                         "unchanged before it ended." + spoiled)
            continue
        ranked = [case for case in runs if _ranked(case)]
        short = "; ".join(_too_short(case) for case in
                          sorted(runs, key=_case_rate, reverse=True) if not _ranked(case))
        if ranked:
            best = max(ranked, key=_case_rate)
            lines.append(f"- **Fastest ({fmt}):** {_row_name(best.first)}, "
                         f"{_rate(best, ' consumed')}, {_produced_and_p99(best)}."
                         + (f" Not ranked: {short}." if short else "") + spoiled)
        else:
            lines.append(f"- **Fastest ({fmt}):** no rate was measured long enough to rank "
                         f"(at least {MIN_RANKED_SEC:g} s of consuming): {short}." + spoiled)
        brokers = sorted({case.first["pair_info"]["broker"] for case in runs})
        if len(brokers) > 1:
            parts = []
            for broker in brokers:
                own = [case for case in runs if case.first["pair_info"]["broker"] == broker]
                if own_ranked := [case for case in own if _ranked(case)]:
                    best = max(own_ranked, key=_case_rate)
                    parts.append(f"{broker}: {_row_name(best.first)} {_rate(best, '')}")
                else:
                    parts.append(f"{broker}: none ranked ("
                                 f"{_too_short(max(own, key=_case_rate))})")
            lines.append(f"- **Fastest per broker ({fmt}):** " + "; ".join(parts) + ".")
    return lines


def _unstable(results: list[dict]) -> list[str]:
    """The throughput figures whose repeats spread over SPREAD_LIMIT of their median."""
    parts = []
    for case in _cases(results, "throughput"):
        if not case.repeated:
            continue
        shaky = [f"{label} {figure.spread()}" for label, (figure, _) in case.figures().items()
                 if figure.unstable]
        if shaky:
            parts.append(f"{_row_name(case.first)} {case.config['format']}: " + ", ".join(shaky))
    if not parts:
        return []
    return [f"- **Unstable across repeats** (highest minus lowest repeat over "
            f"{SPREAD_LIMIT:.0%} of the median; marked{UNSTABLE} in the throughput table): "
            + "; ".join(parts) + "."]


def answer(results: list[dict]) -> list[str]:
    """The headline: most resilient, fastest, who cannot take the payload, who failed."""
    lines = _resilience(results)
    measured = _measured(results, "reliability") + _measured(results, "throughput")
    corrupt: dict[str, int] = {}
    for r in measured:
        if _corrupt(r):
            corrupt[_row_name(r)] = corrupt.get(_row_name(r), 0) + _corrupt(r)
    if corrupt:
        lines.append("- **Changes bytes:** " + "; ".join(
            f"{name} ({count:,} corrupt)" for name, count in corrupt.items()) + ".")
    lines += _fastest(results)
    lines += _unstable(results)
    repeated = _repeated(results)
    if cut := [r for r in measured if not _complete(r)]:
        lines.append("- **Incomplete (cut short; no verdict above counts them):** " + "; ".join(
            " ".join(filter(None, (r["config"]["scenario"], _row_name(r), r["config"]["format"],
                                   r["config"].get("stop"), _repeat_tag(r, repeated))))
            + f" ({_num(r['measurements'].get('successful'))} of "
              f"{_num(r['measurements'].get('total'))} received, ended by "
              f"{r['measurements'].get('outcome') or NA})" for r in cut) + ".")
    no_go: dict[str, dict] = {}
    for r in results:
        if r["status"] == "no-go":
            no_go.setdefault(_case_key(r), r)  # once a case, however often it was repeated
    for r in no_go.values():
        lines.append(f"- **No Go** {_row_name(r)} with {r['config']['records']:,} records "
                     f"as {r['config']['format']}: {r['error']}")
    errors = [r for r in results if r["status"] == "error"]
    if errors:
        lines.append(f"- **Errors:** {len(errors)} experiment(s) failed; see the Errors section.")
    return lines or ["- No experiment finished; nothing to conclude."]


def _broker_verdict(check: dict | None) -> str | None:
    if not check:
        return None
    if not check["checked"]:
        return check["detail"]
    agrees = check.get("agrees")
    if agrees and "stranded" in check and check["stranded"] is None:
        agrees = None  # files written before "cannot tell" called an uncounted stranded "agrees"
    word = {True: "agrees", False: "DISAGREES", None: "cannot tell"}[agrees]
    return f"{word}: {check['detail']}"


def reliability_table(results: list[dict]) -> str:
    """One row a trial: lost and duplicated are counts of one trial, so each repeat is a row
    (with a "repeat" column when a case ran more than once)."""
    rows = []
    measured = _measured(results, "reliability")
    repeated = _repeated(results)
    repeats = any(_case_key(r) in repeated for r in measured)
    for r in measured:
        m, c = r["measurements"], r["config"]
        # What a row cut short had not received yet may still have come: not a loss.
        lost = m.get("lost") if _complete(r) else f"not received: {m.get('lost')} (cut short)"
        rows.append([_row_name(r), c["format"], _stop(c, m),
                     *([_repeat(r) + 1] if repeats else []), lost, m.get("duplicates"),
                     m.get("corrupt"), _fmt(m.get("time_to_produce_sec")),
                     _fmt(m.get("consumer_startup_sec")), _fmt(m.get("graceful_stop_sec")),
                     _fmt(m.get("time_to_consume_sec")), _ended_by(r),
                     _broker_verdict(m.get("broker_check"))])
    return table(["pair", "format", "stop", *(["repeat"] if repeats else []), "lost",
                  "duplicated", "corrupt", "produce s", "startup s", "graceful stop s",
                  "consume s (incl. start-up)", "ended by", "broker check"], rows)


def _stop(config: dict, m: dict) -> str:
    # A stop that found no task in hand tests less than it claims: say so on its row. (Results
    # from before the runner aimed its stops lack the key.)
    between = m.get("stopped_mid_task") is False and config["work_ms"] > 0
    return config["stop"] + (" (between tasks)" if between else "")


def lost_detail(results: list[dict]) -> list[str]:
    lines = []
    repeated = _repeated(results)
    for r in _measured(results, "reliability"):
        m = r["measurements"]
        if m.get("lost_seqs") or m.get("duplicate_seqs"):
            missing = "lost" if _complete(r) else "not received (cut short)"
            tag = f" {tag}" if (tag := _repeat_tag(r, repeated)) else ""
            lines.append(f"- {_row_name(r)} {r['config']['format']} {r['config']['stop']}{tag}: "
                         f"{missing} {m.get('lost_seqs') or 'none'}, duplicated "
                         f"{m.get('duplicate_seqs') or 'none'} (stopped after "
                         f"{_num(m.get('stopped_after'))} received)")
    return lines


def _median_cell(case: Case, key: str) -> object:
    value = case.figure(key).value
    return _fmt(value if value is None or not case.repeated else float(value))


def _repeated_row(case: Case) -> list[object]:
    """A case run more than once: the median of its complete repeats (of those cut short if
    none was complete) with the lowest and highest repeat, flagged when they spread widely."""
    c, figures = case.config, case.figures()
    cells = {label: figure.cell(digits) for label, (figure, digits) in figures.items()}
    corrupt = case.values("corrupt")
    highest = [(r["measurements"].get("latency_ms") or {}).get("max") for r in case.basis]
    return [_row_name(case.first), c["format"], _fmt(c["messages"]),
            _span(case.values("payload_bytes")), _median_cell(case, "time_to_produce_sec"),
            cells["produce msg/s"], _median_cell(case, "time_to_consume_sec"),
            cells["consume msg/s"], cells["consume MB/s"],
            _median_cell(case, "drain_throughput"), cells["p50 ms"], cells["p95 ms"],
            cells["p99 ms"], _fmt(max((h for h in highest if h is not None), default=None)),
            _span(case.values("successful")), sum(corrupt) if corrupt else None,
            ", ".join(dict.fromkeys(str(_ended_by(r) or NA) for r in case.basis)),
            case.repeats()]


def throughput_table(results: list[dict]) -> str:
    rows = []
    cases = [case for case in _cases(results, "throughput") if case.measured]
    repeats = any(case.repeated for case in cases)
    for case in cases:
        if case.repeated:
            rows.append(_repeated_row(case))
            continue
        r = case.first
        m, c = r["measurements"], r["config"]
        rows.append([_row_name(r), c["format"], _fmt(c["messages"]), _fmt(m.get("payload_bytes")),
                     _fmt(m.get("time_to_produce_sec")), _fmt(m.get("produce_throughput"), 1),
                     _fmt(m.get("time_to_consume_sec")), _fmt(m.get("consume_throughput"), 1),
                     _fmt(m.get("consume_mb_s"), 3), _fmt(m.get("drain_throughput"), 1),
                     _latency(m, "p50"), _latency(m, "p95"),
                     _latency(m, "p99"), _latency(m, "max"), _fmt(m.get("successful")),
                     m.get("corrupt"), _ended_by(r)] + (
                         [case.repeats()] if repeats else []))
    # A run cut by its deadline has not lost what it did not receive yet: it shows as fewer
    # received, ended by "incomplete (deadline)", and its rates count only what arrived.
    return table(["pair", "format", "messages", "bytes/msg", "produce s", "produce msg/s",
                  "consume s", "consume msg/s", "consume MB/s", "drain msg/s", "p50 ms", "p95 ms",
                  "p99 ms", "max ms", "received", "corrupt", "ended by",
                  *(["repeats"] if repeats else [])],
                 rows)


def size_table(sizes: list[dict]) -> str:
    if not sizes:
        return "No payload sizes were recorded."
    pairs = list(dict.fromkeys(pair for s in sizes for pair in s["pairs"]))  # merged runs differ

    def verdict(fit: dict | None) -> str | None:
        if fit is None:
            return None
        return "fits" if fit["fits"] else f"**No Go** ({_fmt(fit['wire_bytes'])} on the wire)"

    rows = [[_fmt(s["records"]), s["format"], _fmt(s["bytes"])]
            + [verdict(s["pairs"].get(p)) for p in pairs] for s in sizes]
    return table(["records", "format", "bytes", *pairs], rows)


def settings_table(results: list[dict]) -> str:
    seen: dict[str, dict] = {}
    for r in results:
        seen.setdefault(_pair_name(r), r["pair_info"])
    rows = [[name, f"{info['library']} {info.get('library_version') or NA}",
             info.get("broker_version") or NA,
             ", ".join(f"{k}={v}" for k, v in info["delivery_settings"].items()) or "defaults",
             info["capabilities"]["ack"], info["capabilities"]["on_worker_killed"],
             info["capabilities"]["carries_bytes"], info["capabilities"].get("serializer"),
             info.get("concurrency_unit"),
             _fmt(info["size_limit"]["max_bytes"]) if info["size_limit"]["max_bytes"] else "none"]
            for name, info in seen.items()]
    return table(["pair", "library", "broker", "delivery settings", "acks", "when a worker dies",
                  "bytes", "serializer", "concurrency unit", "size limit"], rows)


def seed_table(results: list[dict]) -> str | None:
    rows = []
    for case in _cases(results):
        c = case.config
        seed = SEED_FIGURES.get((c["pair"], c["format"], c["scenario"], c["messages"]))
        if seed is None or not case.complete or c.get("stop") == "graceful":
            continue
        ours = [median(values) if (values := case.values(key, case.complete)) else None
                for key in ("time_to_produce_sec", "time_to_consume_sec")]
        repeats = f" (median of {n})" if (n := len(case.complete)) > 1 else ""
        rows.append([_row_name(case.first) + repeats, c["format"], c["scenario"],
                     _fmt(c["messages"]), _fmt(seed[0]), _fmt(ours[0]), _fmt(seed[1]),
                     _fmt(ours[1])])
    if not rows:
        return None
    return table(["pair", "format", "test", "messages", "seed produce s", "our produce s",
                  "seed consume s", "our consume s"], rows)


def config_rows(results: list[dict]) -> list[list[object]]:
    rows, seen = [], set()
    for r in results:
        c = r["config"]
        if c["scenario"] in seen:
            continue
        seen.add(c["scenario"])
        wait = f", consumer off {c['wait_sec']} s first" if c["wait_sec"] is not None else ""
        rows.append([f"{c['scenario']} config",
                     f"{c['messages']:,} messages of {c['records']:,} records, work "
                     f"{c['work_ms']} ms a message{wait}, deadline {c['deadline_sec']} s"])
    return rows


def render(document: dict) -> str:
    run, results = document["run"], document["results"]
    env = document["environment"]
    status = "complete" if run["complete"] else "INCOMPLETE (the run stopped early)"
    out = [f"# queuebench report: {run['name']}", "",
           f"Run {run['started_at']} on {env.get('host')}, {status}. Command: `{run['command']}`",
           "", "## The answer", "", *answer(results), ""]
    out += ["## Reliability", "",
            "Produce with the consumer off, start it, stop it (graceful) or SIGKILL it (kill) "
            "halfway through a task once half are processed, restart it, count what the ledger "
            "received.", "",
            reliability_table(results), ""]
    if details := lost_detail(results):
        out += ["Sequence numbers lost or duplicated:", "", *details, ""]
    out += ["## Throughput", "",
            "Consumers running and warm first; consume time runs from the first send to the last "
            "receipt, the drain rate from the first receipt to the last; latency runs from each "
            "message's intended send time (its slot in a paced rate) to its receipt. A row "
            "\"@ N msg/s\" was paced at that rate."
            + (" A case run more than once shows the median of its complete repeats, with the "
               "lowest and highest repeat in brackets (a latency percentile is taken over every "
               "repeat's latencies together when each repeat kept its histogram); a spread over "
               f"{SPREAD_LIMIT:.0%} of the median is marked{UNSTABLE}."
               if any(case.repeated for case in _cases(results, "throughput")) else ""),
            "", throughput_table(results), ""]
    out += ["## Payload sizes and limits", "", size_table(document.get("payload_sizes", [])), ""]
    if seed := seed_table(results):
        out += ["## Beside the seed", "",
                "Seed 003 timed these by hand against AWS-hosted brokers (SQS, MSK) and a local "
                "Redis; ours ran on the machine in the manifest. Compare shapes, not seconds.", "",
                seed, ""]
    errors = [r for r in results if r["status"] == "error"]
    if errors:
        repeated = _repeated(results)
        out += ["## Errors", "", *[f"- {r['config']['scenario']} {_row_name(r)} "
                                   f"{r['config']['format']}"
                                   + (f" {tag}" if (tag := _repeat_tag(r, repeated)) else "")
                                   + f": {r['error']}" for r in errors], ""]
    out += ["## Pairs and delivery settings", "", settings_table(results), ""]
    out += ["## Manifest", "",
            table(["what", "value"], [*[[k, v] for k, v in env.items()], *config_rows(results)]),
            ""]
    return "\n".join(out)
