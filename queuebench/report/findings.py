"""The detailed verdicts under the answer: who lost or repeated what, the fastest per format
and per broker, unstable figures, rows cut short, No Go and errors, each with its evidence."""

from __future__ import annotations

from collections import Counter
from statistics import median

from queuebench.report.cases import (
    DASH,
    MIN_RANKED_SEC,
    NA,
    SPREAD_LIMIT,
    UNSTABLE,
    Case,
    case_key,
    case_rate,
    cases_of,
    complete_rows,
    corrupt_count,
    is_clean,
    is_complete,
    is_ranked,
    latency_cell,
    measured_rows,
    num_or_na,
    repeat_tag,
    repeated_cases,
    row_name,
    shown,
    span,
    spoiled_reasons,
)


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
            costs.append(f"{name} {shown(seconds['kill'], 1)} s after a kill against "
                         f"{shown(seconds['graceful'], 1)} s after a graceful stop "
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
    for r in complete_rows(results, "reliability"):
        by_pair.setdefault(row_name(r), []).append(r)
    cut: dict[str, set[str]] = {}
    for r in measured_rows(results, "reliability"):
        if not is_complete(r):
            cut.setdefault(row_name(r), set()).add(r["config"]["stop"])
    scope = {name: _stop_scope({r["config"]["stop"] for r in rs}, cut.get(name, set()))
             for name, rs in by_pair.items()}
    losses = {name: (sum(r["measurements"].get("lost") or 0 for r in rs),
                     sum(r["measurements"].get("duplicates") or 0 for r in rs),
                     sum(corrupt_count(r) for r in rs))
              for name, rs in by_pair.items()}
    lines = []
    # A clean record over repeats of which some did not finish stands on fewer: it says so.
    finished: dict[str, list[int]] = {}
    for case in cases_of(results, "reliability"):
        if case.repeated:
            count = finished.setdefault(row_name(case.first), [0, 0])
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
        runs_of = Counter(map(case_key, results))  # every repeat of a case, finished or not
        details = []
        for name in lossy:
            # A pair that lost in any repeat loses: each case says in how many of its repeats.
            parts = []
            for case in cases_of(by_pair[name]):
                runs = [r for r in case.results if r["measurements"].get("lost")]
                if not runs:
                    continue
                lost = sorted({r["measurements"]["lost"] for r in runs})
                count = f"{lost[0]}" if len(lost) == 1 else f"{lost[0]}{DASH}{lost[-1]}"
                part = (f"{count} of {runs[0]['measurements']['total']} on "
                        f"{case.config['stop']} ({case.config['format']})")
                if (ran := runs_of[case_key(case.first)]) > 1:
                    finished = "" if ran == len(case.results) else " complete"
                    part += f" in {len(runs)} of {len(case.results)}{finished} repeats"
                parts.append(part)
            details.append(f"{name}: " + ", ".join(parts))
        lines.append("- **Loses messages:** " + "; ".join(details) + ".")
    return lines


def _behind(m: dict) -> str:
    """The count and the time a consume rate stands on."""
    seconds = num_or_na(m.get("time_to_consume_sec"), 1)
    return f"{num_or_na(m.get('successful'))} messages in {seconds} s"


def _rate(case: Case, consumed: str) -> str:
    """The consume rate a verdict stands on, with the count and the time behind it: with
    repeats, their median and spread."""
    if not case.repeated:
        m = case.first["measurements"]
        return f"{shown(m['consume_throughput'], 1)} msg/s{consumed} ({_behind(m)})"
    rate, seconds = case.figure("consume_throughput"), case.figure("time_to_consume_sec")
    return (f"{shown(float(rate.value), 1)} msg/s{consumed} (median of {rate.count} repeats, "
            f"{shown(float(rate.low), 1)}{DASH}{shown(float(rate.high), 1)}"
            f"{UNSTABLE if rate.unstable else ''}; {span(case.values('successful'))} messages "
            f"in a median {num_or_na(seconds.value and float(seconds.value), 1)} s)")


def _too_short(case: Case) -> str:
    if not case.repeated:
        m = case.first["measurements"]
        seconds = m.get("time_to_consume_sec")
        over = (f"over {shown(seconds, 1 if seconds >= 0.1 else 3)} s" if seconds
                else "over an unrecorded time")
        return (f"{row_name(case.first)}, {shown(m['consume_throughput'], 1)} msg/s measured "
                f"{over}, too short to rank")
    seconds = min(r["measurements"].get("time_to_consume_sec") or 0 for r in case.results)
    over = (f"over as little as {shown(seconds, 1 if seconds >= 0.1 else 3)} s in a repeat"
            if seconds else "over an unrecorded time in a repeat")
    return (f"{row_name(case.first)}, {shown(float(case_rate(case)), 1)} msg/s (median of "
            f"{len(case.results)} repeats) measured {over}, too short to rank")


def _produced_and_p99(case: Case) -> str:
    if not case.repeated:
        m = case.first["measurements"]
        return (f"{num_or_na(m.get('produce_throughput'), 1)} msg/s produced, "
                f"p99 latency {latency_cell(m, 'p99') or NA} ms")
    produced, p99 = case.figure("produce_throughput"), case.latency("p99")
    merged = "; p99 of every repeat's latencies together" if case.merged_latency else ""
    return (f"{num_or_na(produced.value and float(produced.value), 1)} msg/s produced, p99 latency "
            f"{num_or_na(p99.value and float(p99.value))} ms (medians of the repeats{merged})")


def _fastest(results: list[dict]) -> list[str]:
    """Fastest per format (and per broker): cases whose every repeat was complete and received
    every message unchanged, by their median consume rate, ranked only where every repeat
    consumed for at least MIN_RANKED_SEC; the shorter ones are named apart, and so is a case
    run several times that is left out for one bad repeat."""
    lines = []
    # A paced case measures latency at a rate someone chose, not how fast the pair can go.
    cases = [case for case in cases_of(results, "throughput")
             if case.measured and case.config.get("rate") is None]
    for fmt in sorted({case.config["format"] for case in cases}):
        own_format = [case for case in cases if case.config["format"] == fmt]
        runs = [case for case in own_format if is_clean(case)]
        spoiled = "; ".join(f"{row_name(case.first)} ({spoiled_reasons(case)})"
                            for case in own_format if case.repeated and not is_clean(case))
        spoiled = f" Not ranked, as not every repeat ended clean: {spoiled}." if spoiled else ""
        if not runs:
            lines.append(f"- **Fastest ({fmt}):** none ranked: no run received every message "
                         "unchanged before it ended." + spoiled)
            continue
        ranked = [case for case in runs if is_ranked(case)]
        short = "; ".join(_too_short(case) for case in
                          sorted(runs, key=case_rate, reverse=True) if not is_ranked(case))
        if ranked:
            best = max(ranked, key=case_rate)
            lines.append(f"- **Fastest ({fmt}):** {row_name(best.first)}, "
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
                if own_ranked := [case for case in own if is_ranked(case)]:
                    best = max(own_ranked, key=case_rate)
                    parts.append(f"{broker}: {row_name(best.first)} {_rate(best, '')}")
                else:
                    parts.append(f"{broker}: none ranked ("
                                 f"{_too_short(max(own, key=case_rate))})")
            lines.append(f"- **Fastest per broker ({fmt}):** " + "; ".join(parts) + ".")
    return lines


def _unstable(results: list[dict]) -> list[str]:
    """The throughput figures whose repeats spread over SPREAD_LIMIT of their median."""
    parts = []
    for case in cases_of(results, "throughput"):
        if not case.repeated:
            continue
        shaky = [f"{label} {figure.spread()}" for label, (figure, _) in case.figures().items()
                 if figure.unstable]
        if shaky:
            parts.append(f"{row_name(case.first)} {case.config['format']}: " + ", ".join(shaky))
    if not parts:
        return []
    return [f"- **Unstable across repeats** (highest minus lowest repeat over "
            f"{SPREAD_LIMIT:.0%} of the median; marked{UNSTABLE} in the throughput table): "
            + "; ".join(parts) + "."]


def findings(results: list[dict]) -> list[str]:
    """The headline: most resilient, fastest, who cannot take the payload, who failed."""
    lines = _resilience(results)
    measured = measured_rows(results, "reliability") + measured_rows(results, "throughput")
    corrupt: dict[str, int] = {}
    for r in measured:
        if corrupt_count(r):
            corrupt[row_name(r)] = corrupt.get(row_name(r), 0) + corrupt_count(r)
    if corrupt:
        lines.append("- **Changes bytes:** " + "; ".join(
            f"{name} ({count:,} corrupt)" for name, count in corrupt.items()) + ".")
    lines += _fastest(results)
    lines += _unstable(results)
    repeated = repeated_cases(results)
    if cut := [r for r in measured if not is_complete(r)]:
        lines.append("- **Incomplete (cut short; no verdict above counts them):** " + "; ".join(
            " ".join(filter(None, (r["config"]["scenario"], row_name(r), r["config"]["format"],
                                   r["config"].get("stop"), repeat_tag(r, repeated))))
            + f" ({num_or_na(r['measurements'].get('successful'))} of "
              f"{num_or_na(r['measurements'].get('total'))} received, ended by "
              f"{r['measurements'].get('outcome') or NA})" for r in cut) + ".")
    no_go: dict[str, dict] = {}
    for r in results:
        if r["status"] == "no-go":
            no_go.setdefault(case_key(r), r)  # once a case, however often it was repeated
    for r in no_go.values():
        lines.append(f"- **No Go** {row_name(r)} with {r['config']['records']:,} records "
                     f"as {r['config']['format']}: {r['error']}")
    if faulted := complete_rows(results, "faults"):
        lost = sum(1 for r in faulted if r["measurements"].get("lost_acked"))
        doubled = sum(1 for r in faulted if r["measurements"].get("duplicates"))
        lines.append(f"- **Faults beyond the consumer:** {lost} of {len(faulted)} runs measured "
                     f"to the end lost acknowledged messages, {doubled} delivered some twice; "
                     "which, and why, in the fault matrix.")
    errors = [r for r in results if r["status"] == "error"]
    if errors:
        lines.append(f"- **Errors:** {len(errors)} experiment(s) failed; see the Errors section.")
    return lines or ["- No experiment finished; nothing to conclude."]

