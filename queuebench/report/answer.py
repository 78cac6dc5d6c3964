"""The answer a person reads first: a matrix of every pair and variant against the questions the
run measured, a legend, then the pair to choose for each need with one line of why.

The honesty rules of the findings hold here too: a row cut short is never a verdict, a rate is
ranked only from complete clean rows consumed for at least MIN_RANKED_SEC, a paced row measures
a rate someone chose and is never "fastest", and a figure within the noise of the best is
"tied", never slower or faster.
"""

from __future__ import annotations

from dataclasses import dataclass

from queuebench.report.cases import (
    MIN_RANKED_SEC,
    NA,
    Case,
    Figure,
    cases_of,
    corrupt_count,
    is_clean,
    is_complete,
    is_ranked,
    measured_rows,
    pair_name,
    shown,
    table,
)
from queuebench.report.faults import durability_mode, fault_rows, injected
from queuebench.report.scenarios import in_scenario, sustained_answers

CLEAN, DUPLICATES, LOSES = "\u2713", "\u2248", "\u2717"
CUT_SHORT, FAILED, NOT_RUN = "\u2026", "!", "\u00b7"
BEST, TIED = "\u2605", "="
# With one repeat a side there is no spread to compare: figures this close are tied.
TIE_MARGIN = 0.10
STOP_COLUMNS = {"graceful": "graceful stop", "kill": "SIGKILL"}
# The faults beyond the consumer the answer asks about, by kind; of several frozen-worker
# runs, the longest pause.
FAULT_COLUMNS = {"broker-kill": "broker crash", "network-cut": "network cut",
                 "consumer-pause": "frozen worker"}
# Brokers that are a file the library opens: nothing to install or run beside the application.
SERVERLESS_BROKERS = {"sqlite"}


@dataclass(frozen=True)
class Speed:
    """A pair's best unpaced case in one format and where it stands against the fastest."""
    case: Case
    rate: float
    ranked: bool


def tied(a: Figure, b: Figure) -> bool:
    """Within the noise of each other: spreads across repeats overlap when both sides ran
    more than once, else within TIE_MARGIN of the larger."""
    if a.count > 1 and b.count > 1:
        return a.low <= b.high and b.low <= a.high
    return abs(a.value - b.value) <= TIE_MARGIN * max(abs(a.value), abs(b.value))


def _stop_cell(rows: list[dict], failed: bool, lost: str = "lost") -> str:
    """One stop mode (or fault) of one pair over every format and repeat: the worst trial
    measured to the end, its losses counted by `lost`; rows cut short count for nothing."""
    complete = [r for r in rows if is_complete(r)]
    if not complete:
        return f"{CUT_SHORT} cut short" if rows else f"{FAILED} error" if failed else NOT_RUN
    most = {key: max(r["measurements"].get(key) or 0 for r in complete)
            for key in (lost, "duplicates")}
    if most[lost]:
        return f"{LOSES} loses {most[lost]}"
    if corrupt := max(corrupt_count(r) for r in complete):
        return f"{LOSES} changes {corrupt}"
    if most["duplicates"]:
        return f"{DUPLICATES} {most['duplicates']} dup"
    return f"{CLEAN} none"


def _fault_labels(results: list[dict]) -> dict[str, str]:
    """The fault label each fault column stands on, {column: "broker-kill 5s"}, in the order of
    FAULT_COLUMNS."""
    labels = {}
    for label in sorted({r["config"]["fault"] for r in fault_rows(results)}, key=_label_sec):
        kind = label.split()[0]
        if kind in FAULT_COLUMNS:
            labels[FAULT_COLUMNS[kind]] = label  # sorted by seconds: the longest stays
    return {column: labels[column] for column in FAULT_COLUMNS.values() if column in labels}


def _label_sec(label: str) -> float:
    """The seconds in a fault label: 45 in "consumer-pause 45s" (0 if it names none)."""
    number = label.split()[-1].removesuffix("s")
    return float(number) if number.replace(".", "", 1).isdigit() else 0.0


def _fault_cell(rows: list[dict]) -> str:
    """One fault of one pair: the worst run by acknowledged messages lost, per broker
    durability mode where the run swept it; a run whose fault never came counts for nothing."""
    cells = []
    for mode in dict.fromkeys(r["config"].get("durability") for r in rows):
        own = [r for r in rows if r["config"].get("durability") == mode]
        measured = [r for r in own if r["status"] in ("ok", "incomplete") and injected(r)]
        cell = (NA if all(r["status"] == "n/a" for r in own) else
                _stop_cell(measured, any(r["status"] == "error" for r in own), "lost_acked"))
        cells.append(f"{mode}: {cell}" if mode else cell)
    return "; ".join(cells) or NOT_RUN


def _speeds(results: list[dict], fmt: str) -> dict[str, Speed]:
    """Each pair's fastest unpaced case in `fmt`, by median consume rate."""
    best: dict[str, Speed] = {}
    for case in cases_of(results, "throughput"):
        config = case.config
        if config["format"] != fmt or config.get("rate") is not None or not case.measured:
            continue
        rate = case.figure("consume_throughput").value
        if rate is None:
            continue
        speed = Speed(case, rate, is_clean(case) and is_ranked(case))
        name = pair_name(case.first)
        if name not in best or (speed.ranked, rate) > (best[name].ranked, best[name].rate):
            best[name] = speed
    return best


def _fastest(speeds: dict[str, Speed]) -> tuple[Speed | None, list[str]]:
    """The fastest ranked case and the pairs tied with it."""
    ranked = {name: s for name, s in speeds.items() if s.ranked}
    if not ranked:
        return None, []
    best = max(ranked.values(), key=lambda s: s.rate)
    return best, [name for name, s in ranked.items() if s is not best
                  and tied(s.case.figure("consume_throughput"),
                           best.case.figure("consume_throughput"))]


def _speed_cell(speed: Speed | None, best: Speed | None, ties: list[str]) -> str:
    if speed is None:
        return NOT_RUN
    case = speed.case
    if not is_clean(case):
        lost = max(r["measurements"].get("lost") or 0 for r in case.results)
        return (f"{LOSES} loses {lost}" if lost else f"{CUT_SHORT} cut short"
                if any(not is_complete(r) for r in case.results) else f"{FAILED} not clean")
    mark = (f" {BEST}" if speed is best else f" {TIED}" if pair_name(case.first) in ties
            else "" if speed.ranked else f" (<{MIN_RANKED_SEC:g} s)")
    return f"{speed.rate:,.0f}{mark}"


def _largest(sizes: list[dict]) -> dict[str, str]:
    """Per pair, the largest payload measured that fits its limit; marked when one did not."""
    cells = {}
    for pair in dict.fromkeys(p for size in sizes for p in size["pairs"]):
        fitting = [s["bytes"] for s in sizes if s["pairs"].get(pair, {}).get("fits")]
        refused = any(not s["pairs"][pair]["fits"] for s in sizes if pair in s["pairs"])
        largest = _megabytes(max(fitting)) if fitting else "none"
        cells[pair] = f"{LOSES if refused else CLEAN} {largest}"
    return cells


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} KB"


def _sustained(answers: list[dict]) -> dict[str, dict]:
    """Each pair's highest sustained rate (of its formats), as its answer row's measurements."""
    best: dict[str, dict] = {}
    for r in answers:
        m, name = r["measurements"], pair_name(r)
        if name not in best or (m["sustained_rate"] or 0) > (best[name]["sustained_rate"] or 0):
            best[name] = m
    return best


def _fastest_sustained(sustained: dict[str, dict]) -> tuple[str | None, list[str]]:
    """The pair sustaining the highest rate and those within TIE_MARGIN of it (the search
    stops bisecting at 5%: closer rates are not told apart)."""
    rates = {name: m["sustained_rate"] for name, m in sustained.items() if m["sustained_rate"]}
    if not rates:
        return None, []
    best = max(rates, key=rates.get)
    return best, [name for name, rate in rates.items() if name != best
                  and tied(Figure(rate), Figure(rates[best]))]


def _sustained_cell(m: dict | None, best: str | None, ties: list[str], name: str) -> str:
    if m is None:
        return NOT_RUN
    if not m["sustained_rate"]:
        lowest = min(p["rate"] for p in m["probes"])
        return f"{LOSES} < {lowest:,.0f}"
    mark = f" {BEST}" if name == best else f" {TIED}" if name in ties else ""
    return f"{m['sustained_rate']:,.0f}{mark}"


def _bound(sustained: dict[str, dict]) -> str:
    return "/".join(sorted({f"{m['p99_bound_ms']:g}" for m in sustained.values()}))


def matrix(results: list[dict], sizes: list[dict], answers: list[dict] = ()) -> str:
    """One row per pair and variant, one column per question the results hold (`answers`: the
    sustained-rate searches' answer rows)."""
    sustained = _sustained(answers)
    names = list(dict.fromkeys([*(pair_name(r) for r in results), *sustained]))
    reliability = measured_rows(results, "reliability")
    failed = {(pair_name(r), r["config"].get("stop")) for r in results if r["status"] == "error"}
    stops = [stop for stop in STOP_COLUMNS if any(r["config"]["stop"] == stop
                                                  for r in reliability)]
    formats = sorted({r["config"]["format"] for r in measured_rows(results, "throughput")
                      if r["config"].get("rate") is None})
    speeds = {fmt: _speeds(results, fmt) for fmt in formats}
    fastest = {fmt: _fastest(speeds[fmt]) for fmt in formats}
    largest = _largest(sizes) if sizes else {}
    faults = _fault_labels(results)
    rows = []
    for name in names:
        row = [name]
        for stop in stops:
            own = [r for r in reliability if pair_name(r) == name and r["config"]["stop"] == stop]
            row.append(_stop_cell(own, (name, stop) in failed))
        for fmt in formats:
            row.append(_speed_cell(speeds[fmt].get(name), *fastest[fmt]))
        for label in faults.values():
            row.append(_fault_cell([r for r in fault_rows(results) if pair_name(r) == name
                                    and r["config"]["fault"] == label]))
        if sustained:
            row.append(_sustained_cell(sustained.get(name), *_fastest_sustained(sustained), name))
        if largest:
            row.append(largest.get(name.split(" [")[0], NOT_RUN))
        rows.append(row)
    headers = ["pair", *(STOP_COLUMNS[stop] for stop in stops),
               *(f"msg/s {fmt}" for fmt in formats), *faults,
               *([f"sustains msg/s at p99 <= {_bound(sustained)} ms"] if sustained else []),
               *(["largest message"] if largest else [])]
    return table(headers, rows)


def legend(document: dict, answers: list[dict] = ()) -> str:
    results, run = document["results"], document["run"]
    parts = []
    reliability = measured_rows(results, "reliability")
    if reliability:
        parts.append(f"{CLEAN} nothing lost or repeated, {DUPLICATES} N duplicated and none "
                     f"lost, {LOSES} loses N (the most in one trial of "
                     f"{_counts(reliability)} messages; changes: bytes altered), {CUT_SHORT} cut "
                     f"short by its deadline (no verdict), {FAILED} failed, {NOT_RUN} not run; "
                     f"{_repeats(reliability)} per stop and format")
    throughput = [r for r in measured_rows(results, "throughput")
                  if r["config"].get("rate") is None]
    if throughput:
        parts.append(f"msg/s: median consume rate of {_counts(throughput)} messages sent as fast "
                     f"as the producer goes, {_repeats(throughput)}; {BEST} fastest of its "
                     f"format, {TIED} tied with it (spreads across repeats overlap, or within "
                     f"{TIE_MARGIN:.0%} with one repeat), (<{MIN_RANKED_SEC:g} s) too short to "
                     "rank")
    if faults := _fault_labels(results):
        modes = sorted(set(filter(None, map(durability_mode, fault_rows(results)))))
        parts.append(f"{', '.join(faults)}: {', '.join(faults.values())} while messages flow; "
                     f"{CLEAN} no acknowledged message lost, {DUPLICATES} N duplicated and none "
                     f"lost, {LOSES} loses N acknowledged (sends never acknowledged are not "
                     f"counted), {NA}: means nothing for the pair"
                     + (f"; per broker durability mode ({', '.join(modes)})" if modes else ""))
    if answers:
        parts.append(f"sustains: the highest constant rate with every message received, p99 "
                     f"within the bound and no growing backlog, found by probes (each pair's "
                     f"best format; {LOSES} < N: not even the lowest rate tried, N); {BEST} "
                     f"highest, {TIED} within {TIE_MARGIN:.0%} of it")
    if document.get("payload_sizes"):
        parts.append(f"largest message: the biggest payload measured that fits the pair's "
                     f"limit, {LOSES} when a larger one did not")
    parts.append(f"run {run['name']}, started {run['started_at'][:16]}")
    return "Marks: " + "; ".join(parts) + "."


def _counts(rows: list[dict]) -> str:
    counts = sorted({r["config"]["messages"] for r in rows})
    return "/".join(f"{n:,}" for n in counts)


def _repeats(rows: list[dict]) -> str:
    counts = sorted({len(case.results) for case in cases_of(rows)})
    most = counts[-1]
    return (f"{'/'.join(map(str, counts))} repeats" if most > 1 else "1 repeat")


def _setting_note(info: dict) -> str:
    """What decides delivery for this variant, from the declared capabilities."""
    pieces = info["capabilities"]["ack"].split("; ")
    own = [p.split(": ", 1)[1] for p in pieces if p.startswith(f"{info['variant']}: ")]
    note = own[0] if own else pieces[0].removeprefix("default: ")
    return f"acks: {note.split('. ')[0]}"


def _speed_note(speed: Speed, fmt: str) -> str:
    m = speed.case.first["measurements"]
    repeats = f", median of {n}" if (n := len(speed.case.results)) > 1 else ""
    return (f"{speed.rate:,.0f} msg/s {fmt} ({shown(m.get('successful'))} messages in "
            f"{shown(speed.case.figure('time_to_consume_sec').value, 1)} s{repeats})")


def _with_ties(name: str, ties: list[str]) -> str:
    return name + (f" (tied: {', '.join(ties)})" if ties else "")


def best_for(results: list[dict], sizes: list[dict], answers: list[dict] = ()) -> list[str]:
    """The pair to choose for each need, with one line of why from the measured figures."""
    reliability = measured_rows(results, "reliability")
    info = {pair_name(r): r["pair_info"] for r in results}
    formats = sorted({r["config"]["format"] for r in measured_rows(results, "throughput")
                      if r["config"].get("rate") is None})
    speeds = {fmt: _speeds(results, fmt) for fmt in formats}
    first = formats[0] if formats else None

    def rate(name: str) -> float:
        speed = speeds[first].get(name) if first else None
        return speed.rate if speed and speed.ranked else 0.0

    cells = {name: {stop: _stop_cell([r for r in reliability if pair_name(r) == name
                                       and r["config"]["stop"] == stop], False)
                    for stop in STOP_COLUMNS} for name in info}
    lines = []
    safe = [n for n, c in cells.items() if all(cell.startswith(CLEAN) for cell in c.values())]
    if safe:
        pick = max(safe, key=rate)
        speed = speeds[first].get(pick) if first else None
        lines.append(f"- **Nothing may be lost:** {pick}: no message lost or repeated in any "
                     f"graceful stop or SIGKILL; {_setting_note(info[pick])}"
                     + (f"; fastest of the {len(safe)} such pairs, {_speed_note(speed, first)}"
                        if speed and speed.ranked and len(safe) > 1 else "") + ".")
    for fmt in formats[:1] if formats else []:
        best, ties = _fastest(speeds[fmt])
        if best is None:
            continue
        name = pair_name(best.case.first)
        kill = cells[name]["kill"]
        # Faster but over too short a time to rank: shown, never the pick.
        brief = [n for n, s in speeds[fmt].items() if not s.ranked and is_clean(s.case)
                 and s.rate > best.rate]
        lines.append(f"- **Speed matters most:** {_with_ties(name, ties)}: "
                     f"{_speed_note(best, fmt)}"
                     + ("" if kill == NOT_RUN else f", on SIGKILL {kill}")
                     + (f"; {', '.join(brief)} went faster over less than "
                        f"{MIN_RANKED_SEC:g} s, too short to rank" if brief else "")
                     + "".join(f"; in {f}: {pair_name(b.case.first)}, {_speed_note(b, f)}"
                               for f in formats[1:] if (b := _fastest(speeds[f])[0])) + ".")
    if latency := _highest_sustained(answers) or _lowest_latency(results):
        lines.append(latency)
    if sizes and (large := _large_messages(results, sizes, speeds)):
        lines.append(large)
    serverless = [n for n in info if info[n]["broker"] in SERVERLESS_BROKERS]
    if serverless:
        pick = max(serverless, key=lambda n: (cells[n]["kill"].startswith(CLEAN), rate(n)))
        kill = cells[pick]["kill"]
        lines.append(f"- **No server to run:** {pick}: a {info[pick]['broker']} file beside the "
                     "application" + ("" if kill == NOT_RUN else f"; on SIGKILL: {kill}")
                     + (f"; {_speed_note(speeds[first][pick], first)}"
                        if first and rate(pick) else "") + ".")
    return lines


def _highest_sustained(answers: list[dict]) -> str | None:
    """Latency at a rate that holds: the pair sustaining the highest rate within its p99 bound."""
    sustained = _sustained(answers)
    best, ties = _fastest_sustained(sustained)
    if best is None:
        return None
    m = sustained[best]
    return (f"- **Latency matters most:** {_with_ties(best, ties)}: sustains "
            f"{m['sustained_rate']:,.0f} msg/s with p99 within {m['p99_bound_ms']:g} ms and no "
            f"growing backlog (highest rate found in {len(m['probes'])} probes"
            + (f"; it failed at a lower rate, {below:,.0f} msg/s"
               if (below := m.get("failed_below_rate")) else "") + ").")


def _lowest_latency(results: list[dict]) -> str | None:
    """Lowest p99 among clean cases: paced ones when the run has them (latency at a chosen
    rate), else the unpaced ones, whose p99 includes waiting behind the whole burst."""
    cases = [c for c in cases_of(results, "throughput")
             if is_clean(c) and c.latency("p99").value is not None]
    paced = [c for c in cases if c.config.get("rate") is not None]
    pool = paced or [c for c in cases if is_ranked(c)]
    if not pool:
        return None
    best = min(pool, key=lambda c: c.latency("p99").value)
    ties = list(dict.fromkeys(pair_name(c.first) for c in pool  # the best in another
                              if pair_name(c.first) != pair_name(best.first)  # format is no tie
                              and tied(c.latency("p99"), best.latency("p99"))))
    rate = best.config.get("rate")
    how = (f"at {shown(float(rate), 0)} msg/s" if isinstance(rate, int | float) else
           "at a staged rate" if rate else
           f"with {best.config['messages']:,} messages sent at once, so it includes waiting in "
           "the backlog")
    return (f"- **Latency matters most:** {_with_ties(pair_name(best.first), ties)}: p99 "
            f"{shown(float(best.latency('p99').value))} ms, p50 "
            f"{shown(float(best.latency('p50').value))} ms ({best.config['format']}, {how}).")


def _large_messages(results: list[dict], sizes: list[dict],
                    speeds: dict[str, dict[str, Speed]]) -> str | None:
    """The pair that fits the largest payload measured and moves the most MB/s."""
    largest = max(sizes, key=lambda s: s["bytes"])
    fits = {p for p, fit in largest["pairs"].items() if fit["fits"]}
    refused = [p for p, fit in largest["pairs"].items() if not fit["fits"]]
    candidates = [s for by_pair in speeds.values() for name, s in by_pair.items()
                  if name.split(" [")[0] in fits and s.ranked
                  and s.case.figure("consume_mb_s").value is not None]
    if not candidates:
        return None
    best = max(candidates, key=lambda s: s.case.figure("consume_mb_s").value)
    limit = best.case.first["pair_info"]["size_limit"]["max_bytes"]
    return (f"- **Messages are large:** {pair_name(best.case.first)}: takes "
            f"{largest['records']:,} records as {largest['format']} "
            f"({_megabytes(largest['bytes'])}; limit "
            f"{_megabytes(limit) if limit else 'none'}) and moved "
            f"{shown(best.case.figure('consume_mb_s').value)} MB/s with "
            f"{shown(best.case.first['measurements'].get('payload_bytes'))}-byte "
            f"{best.case.config['format']} messages"
            + (f"; refused by {', '.join(refused)}" if refused else "") + ".")


def render_answer(document: dict) -> list[str]:
    every, sizes = document["results"], document.get("payload_sizes") or []
    if not any(r["status"] in ("ok", "incomplete") for r in every):
        return ["No experiment finished; nothing to conclude."]
    # The seeds' scenarios answer in their own sections, except the sustained rate.
    results, answers = [r for r in every if not in_scenario(r)], sustained_answers(every)
    if not results and not answers:
        return ["This run holds only the seeds' scenarios: each answers in its section below."]
    picks = best_for(results, sizes, answers)  # none from a run of faults only
    return [matrix(results, sizes, answers), "",
            legend({**document, "results": results}, answers),
            *(["", "Best for:", "", *picks] if picks else [])]
