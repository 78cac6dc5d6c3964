"""A section per seed scenario a run holds (experiments/scalability.yaml, burst.yaml, ...), each a
table shaped like the seed's.

Rows come from each result's `config.workload`; their figures are the median of a case's
complete repeats (of those cut short if none was), with the spread when it ran more than once.
A verdict (a scaling efficiency, a target passed, a good message lost) stands only on cases
measured to the end; a row "n/a" shows its one-line reason (one row for every sweep value of a
pair that is n/a for the same reason), a capped fleet what ran and why.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial

from queuebench.ceilings import Ceiling
from queuebench.report.cases import (
    NA,
    Case,
    case_key,
    ended_by,
    figure_of,
    is_clean,
    measured_by,
    pair_name,
    recorded_ceilings,
    shown,
    spoiled_reasons,
    table,
)

PASS, FAIL = "\u2713", "\u2717"
# Seed 000's scalability table, by consumers: (messages, msg/s, startup s, p50 ms, p99 ms).
SEED_SCALABILITY = {100: (1_000, 2_142, 0.08, 4.84, 13.05),
                    500: (2_000, 906, 0.36, 19.93, 315.0),
                    900: (3_000, 341, 0.73, 36.36, 326.0)}


def in_scenario(result: dict) -> bool:
    """A row of a seed scenario: shown in that scenario's section, not the throughput table."""
    return result["config"].get("workload") in SECTIONS


# What sets a scenario's cases apart that their config does not carry: the payload's size, a
# Kafka topic's partitions, the sends in flight, and an n/a row's reason.
SHAPE_KEYS = ("payload", "partitions", "producer_in_flight", "not_applicable")


def scenario_cases(results: list[dict], name: str) -> list[Case]:
    """The cases of scenario `name`: measured, n/a and failed alike, and a rate search's answer
    rows (its probes are listed in the answer)."""
    groups: dict[str, list[dict]] = {}
    for r in results:
        if r["config"].get("workload") == name and "sustained_probe" not in r["measurements"]:
            shape = {key: r["measurements"].get(key) for key in SHAPE_KEYS}
            groups.setdefault(case_key(r) + json.dumps(shape, sort_keys=True), []).append(r)
    return [Case(group) for group in groups.values()]


def ended(case: Case) -> str:
    """How the case's repeats ended; an n/a row's reason; a failed row's error."""
    first = case.first
    if first["status"] == "n/a":
        return f"n/a: {first['measurements']['not_applicable']}"
    if not case.measured:
        return f"{first['status']}: {first.get('error') or NA}"
    return ", ".join(dict.fromkeys(str(ended_by(r)) for r in case.results))


def collapse_not_applicable(rows: list[tuple[Case, list[object]]]) -> list[list[object]]:
    """A table's rows, each given with its case, where the n/a rows of one pair with one reason
    become one row in the place of the first: each cell the values its rows hold, joined by "/"
    (a sweep's "1/16/256"), the reason once. Measured rows stay as they are."""
    groups: dict[object, list[list[object]]] = {}
    for index, (case, row) in enumerate(rows):
        key = (pair_name(case.first), ended(case)) if case.first["status"] == "n/a" else index
        groups.setdefault(key, []).append(row)
    return [group[0] if len(group) == 1
            else [_joined(column) for column in zip(*group, strict=True)]
            for group in groups.values()]


def _joined(cells: tuple[object, ...]) -> object:
    """The distinct values of a column in order, unmeasured ones left out: "async", "1/16/256"."""
    values = dict.fromkeys(str(c) for c in cells if c is not None and c != "")
    return "/".join(values) if values else cells[0]


def cell(case: Case, key: str, digits: int = 1) -> object:
    return case.figure(key).cell(digits)


def latency(case: Case, percentile: str) -> object:
    return case.latency(percentile).cell(2)


def _nested(case: Case, pick: Callable[[dict], object], digits: int = 2) -> object:
    """A figure inside each repeat's measurements (a stage's p99, a kind's latency), over the
    repeats as Case.figure takes a flat one."""
    return figure_of([pick(r["measurements"]) for r in case.basis]).cell(digits)


# --- seed 000: scalability ------------------------------------------------------------------

def units(case: Case) -> int:
    """Consumers in the pair's own unit: processes times concurrency (what ran, if capped)."""
    return case.config["consumers"] * case.config["concurrency"]


def task(case: Case) -> str:
    work = case.config["work_ms"]
    return "no-op" if not work else f"sleeps {work:g} ms"


def _capped(case: Case) -> dict | None:
    return case.first["measurements"].get("capped")


def pss_cell(case: Case) -> object:
    """PSS per consumer; "not taken" by a run from before queuebench took it (no key at all)."""
    measured = [r["measurements"] for r in case.basis]
    if not measured or any("consumer_pss_mb_per_unit" in m for m in measured):
        return cell(case, "consumer_pss_mb_per_unit", 2)
    return "not taken"


def consumers_cell(case: Case) -> str:
    """What ran, spread over processes when it was, and what was asked when memory capped it:
    900 group members in one process and in nine are not the same case."""
    processes = case.config["consumers"]
    text = f"{units(case):,}"
    if processes > 1:
        text += f" ({processes} processes of {case.config['concurrency']:,})"
    if capped := _capped(case):
        text += f" (asked {capped['asked_concurrency'] * processes:,})"
    return text


def scalability_table(cases: list[Case]) -> str:
    rows = []
    for case in cases:
        consumers = consumers_cell(case)
        lost, duplicated = case.values("lost"), case.values("duplicates")
        rows.append((case, [pair_name(case.first), task(case), consumers,
                            shown(case.config["producers"]), shown(case.config["messages"]),
                            cell(case, "consume_throughput"),
                            cell(case, "consumer_startup_sec", 2), latency(case, "p50"),
                            latency(case, "p99"), max(lost) if lost else None,
                            max(duplicated) if duplicated else None,
                            cell(case, "consumer_rss_mb_per_unit", 2),
                            pss_cell(case), ended(case)]))
    return table(["pair", "task", "consumers", "producers", "messages", "msg/s", "startup s",
                  "p50 ms", "p99 ms", "lost", "duplicated", "RSS MB per consumer",
                  "PSS MB per consumer", "ended by"],
                 collapse_not_applicable(rows))


def scaling_efficiency(small: Case, large: Case) -> float:
    """Seed 000's (T_900 / T_100) / 9, between any two consumer counts:
    (T_large / T_small) / (N_large / N_small); 1 is linear scaling."""
    ratio = large.figure("consume_throughput").value / small.figure("consume_throughput").value
    return ratio / (units(large) / units(small))


def sweep_ends(cases: list[Case]) -> list[tuple[str, str, Case, Case]]:
    """Per pair and task (one producer, measured cases): its fewest and its most consumers, where
    those differ."""
    sweeps: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        if case.measured and case.config["producers"] == 1:
            sweeps.setdefault((pair_name(case.first), task(case)), []).append(case)
    ends = [(name, work, min(sweep, key=units), max(sweep, key=units))
            for (name, work), sweep in sweeps.items()]
    return [(name, work, small, large) for name, work, small, large in ends
            if units(small) != units(large)]


def efficiency_lines(cases: list[Case]) -> list[str]:
    """Per pair and task, the efficiency from its fewest to its most consumers (one producer),
    from clean cases only."""
    lines = []
    for name, work, small, large in sweep_ends(cases):
        span = f"{consumers_cell(small)} to {consumers_cell(large)} consumers"
        spoiled = [c for c in (small, large) if not is_clean(c)]
        verdict = (f"no verdict ({'; '.join(spoiled_reasons(c) for c in spoiled)})" if spoiled
                   else f"{scaling_efficiency(small, large):.1%}")
        lines.append(f"- {name}, {work}, {span}: {verdict}")
    return lines


# What saturated, when sleeping tasks do not scale: below this efficiency a pair gets a line;
# at or over these the machine's CPU or the broker's own ceiling is what held it.
SCALES_AT_LEAST = 0.5
CPU_BUSY_PCT = 90.0
NEAR_CEILING = 0.8
SATURATION_RULE = (
    "What saturated, for each pair whose sleeping-task throughput grew by less than "
    f"{SCALES_AT_LEAST:.0%} of linear (or fell), from the figures at its most consumers: the CPU "
    f"when the machine was {CPU_BUSY_PCT:.0f}% busy or more; the broker when the pair reached "
    f"{NEAR_CEILING:.0%} of its broker's own ceiling (`make ceilings`, at about its message "
    "size); memory when the fleet was capped to fit; clear of those, a lock or a connection in "
    "the library. A figure not measured is named and decides nothing.")


def _host(case: Case, key: str) -> float | None:
    return figure_of([(r["measurements"].get("host") or {}).get(key) for r in case.basis]).value


def saturation(large: Case, ceilings: Sequence[Ceiling]) -> str:
    """The measured facts at a sweep's most consumers that bear on what held it, and what
    they point to by the rule in SATURATION_RULE."""
    facts, causes = [], []
    busy, harness = _host(large, "cpu_busy_pct"), _host(large, "harness_cpu_pct")
    if busy is None:
        facts.append("machine CPU not recorded")
    else:
        facts.append(f"machine CPU {busy:.1f}% busy"
                     + (f" (the harness {harness:.1f}%)" if harness is not None else ""))
        if busy >= CPU_BUSY_PCT:
            causes.append("the CPU")
    broker = large.config["pair"].partition("+")[2]
    ceiling = large.broker_ceiling(ceilings)
    rate = large.figure("consume_throughput").value
    if ceiling is None:
        facts.append(f"no ceiling of {broker} measured near its message size")
    else:
        share = rate / ceiling.consume_msg_s
        facts.append(f"{rate:,.1f} msg/s, {share:.0%} of {broker}'s own ceiling of "
                     f"{ceiling.consume_msg_s:,.0f} msg/s")
        if share >= NEAR_CEILING:
            causes.append("the broker")
    if capped := _capped(large):
        asked = capped["asked_concurrency"] * large.config["consumers"]
        facts.append(f"fleet capped by memory (asked {asked:,})")
        causes.append("memory")
    if causes:
        verdict = " and ".join(causes)
    elif busy is not None and ceiling is not None:
        info = large.first["pair_info"]
        how = info.get("variant_note") or info.get("concurrency_unit") or NA
        verdict = ("neither the CPU nor the broker's own limit; a lock or a connection in the "
                   f"library (its consumers: {how})")
    elif busy is not None:
        verdict = "not the CPU; the broker or a lock in the library, with no ceiling to tell which"
    elif ceiling is not None:
        verdict = "not the broker's own limit; the CPU or a lock in the library, cannot tell which"
    else:
        verdict = "cannot tell"
    return f"{', '.join(facts)}: {verdict}"


def saturation_lines(cases: list[Case], ceilings: Sequence[Ceiling]) -> list[str]:
    """A line for each sleeping-task sweep measured clean at both ends that scaled by less
    than SCALES_AT_LEAST of linear."""
    return [f"- {name}, {work}, {consumers_cell(large)} consumers: {saturation(large, ceilings)}"
            for name, work, small, large in sweep_ends(cases)
            if large.config["work_ms"] and is_clean(small) and is_clean(large)
            and scaling_efficiency(small, large) < SCALES_AT_LEAST]


def seed_scalability_table(cases: list[Case]) -> str:
    """Seed 000's rows beside ours at the same consumer count (no-op task, one producer)."""
    rows = []
    for count, (messages, rate, startup, p50, p99) in SEED_SCALABILITY.items():
        rows.append(["seed 000", shown(count), shown(messages), shown(rate), shown(startup),
                     shown(p50), shown(p99)])
        rows += [[pair_name(c.first), consumers_cell(c), shown(c.config["messages"]),
                  cell(c, "consume_throughput"), cell(c, "consumer_startup_sec", 2),
                  latency(c, "p50"), latency(c, "p99")]
                 for c in cases if c.measured and units(c) == count
                 and not c.config["work_ms"] and c.config["producers"] == 1]
    return table(["who", "consumers", "messages", "msg/s", "startup s", "p50 ms", "p99 ms"],
                 rows)


def scalability_section(cases: list[Case], ceilings: Sequence[Ceiling] = ()) -> list[str]:
    capped = [f"- {pair_name(c.first)}: {_capped(c)['reason']}" for c in cases if _capped(c)]
    saturated = saturation_lines(cases, ceilings)
    return ["Consumers ready before the first message (a Kafka group: stable, every member "
            "holding its partitions); a consumer is the pair's own unit (threads, pool "
            "children, group members: see the settings table). RSS is the peak of the "
            "consumers' process trees over the consumers, as `ps` counts it: a page forked "
            "children share counts in each. PSS, taken once the work was done, splits each "
            "shared page between its sharers: what one more consumer really costs.", "",
            scalability_table(cases), "", *([*capped, ""] if capped else []),
            "Scaling efficiency, seed 000's (T_900 / T_100) / 9 between a pair's fewest and "
            "most consumers, (T_most / T_fewest) / (N_most / N_fewest), 100% linear:", "",
            *(efficiency_lines(cases) or ["- no pair ran two consumer counts"]), "",
            *([SATURATION_RULE, "", *saturated, ""] if saturated else []),
            "Beside the seed: seed 000 ran 100/500/900 consumers of one shared connection on "
            "its machine (efficiency 1.8%); ours ran on the machine in the manifest. Compare "
            "shapes, not figures.", "", seed_scalability_table(cases), ""]


# --- seeds 000 and 001: bursts --------------------------------------------------------------

def burst_table(cases: list[Case]) -> str:
    rows = []
    for case in cases:
        rate = case.config["rate"]
        stages = rate if isinstance(rate, list | tuple) else []  # results.json holds lists
        if not case.measured:
            rows.append((case, [pair_name(case.first), None, None, None, None, None, None,
                                None, ended(case)]))
            continue
        heaviest = case.first["measurements"].get("heaviest_stage")
        for index, (messages, delay_ms) in enumerate(stages):
            heavy = index == heaviest
            rows.append((case, [pair_name(case.first) if index == 0 else "",
                         f"{index + 1}: {messages:,} at {delay_ms:g} ms"
                         + (" (heaviest)" if heavy else ""),
                         _nested(case, lambda m, i=index: m["stages"][i]["latency_ms"]["p50"]),
                         _nested(case, lambda m, i=index: m["stages"][i]["latency_ms"]["p99"]),
                         _nested(case, lambda m, i=index: m["stages"][i]["deepest_backlog"], 0),
                         cell(case, "deepest_backlog", 0) if heavy else "",
                         cell(case, "recovery_sec", 2) if heavy else "",
                         cell(case, "drained_sec", 2) if heavy else "",
                         ended(case) if index == 0 else ""]))
    return table(["pair", "stage: messages at delay", "p50 ms", "p99 ms", "deepest backlog",
                  "run's deepest", "recovery s", "drained s", "ended by"],
                 collapse_not_applicable(rows))


def burst_section(cases: list[Case]) -> list[str]:
    return ["Latency of the messages sent in each stage and the deepest backlog while it was "
            "sent. Recovery: from the heaviest stage's last send until a message sent after it "
            "is back within twice the first stage's p50 (n/a: not before the run ended); "
            "drained: until the backlog is back to the first stage's deepest.", "",
            burst_table(cases), ""]


# --- seed 001: the highest sustained rate and the targets -----------------------------------

def _probe(probe: dict) -> str:
    mark = PASS if probe["sustained"] else f"{FAIL} ({probe['why']})"
    return f"{probe['rate']:,.0f} {mark}"


def sustained_answers(results: list[dict]) -> list[dict]:
    """The rate searches' answer rows (one per pair, variant and format)."""
    return [r for r in results if r["config"]["scenario"] == "sustained" and r["status"] == "ok"]


def sustained_table(answers: list[dict]) -> str:
    rows = []
    for r in answers:
        m = r["measurements"]
        rate = m["sustained_rate"]
        rows.append([pair_name(r), r["config"]["format"],
                     (f"{rate:,.0f}" + (f" (but failed at {below:,.0f})"
                                         if (below := m.get("failed_below_rate")) else ""))
                     if rate else f"none of the rates tried ({FAIL})",
                     f"{m['p99_bound_ms']:g}", shown(m.get("first_failed_rate"), 0),
                     "; ".join(_probe(p) for p in m["probes"])])
    return table(["pair", "format", "sustains msg/s", "at p99 <= ms", "first failed msg/s",
                  "probes in order: msg/s, passed or why not"], rows)


def target_cell(case: Case, percentile: str, bound: float) -> str:
    """The percentile over the repeats, and pass only when every repeat measured to the end
    passed; no verdict from a row cut short."""
    verdicts = [r["measurements"]["targets"][percentile] for r in case.complete]
    value = latency(case, percentile)
    if not verdicts or None in verdicts:
        return f"{value} (no verdict)"
    failed = verdicts.count(False)
    mark = PASS if not failed else f"{FAIL}" + (f" {failed} of {len(verdicts)}"
                                                if len(verdicts) > 1 else "")
    return f"{mark} {value} < {bound:g}"


def targets_table(cases: list[Case]) -> str:
    rows = []
    for case in cases:
        bounds = case.first["measurements"]["target_bounds_ms"]
        rows.append([pair_name(case.first), case.config["format"],
                     shown(float(case.config["rate"]), 0),
                     *(target_cell(case, p, bounds[p]) for p in ("p50", "p95", "p99")),
                     ended(case)])
    return table(["pair", "format", "msg/s", "p50 ms", "p95 ms", "p99 ms", "ended by"], rows)


def sustained_section(cases: list[Case]) -> list[str]:
    out = []
    if answers := sustained_answers([r for case in cases for r in case.results]):
        out += ["The highest constant rate each pair sustains: every message received, p99 "
                "within the bound and no growing backlog when sending ended; found by probes "
                "stepping the rate up, then bisecting between the last pass and the first fail "
                "(a probe cut short fails; a rate passes as soon as more of its probes passed "
                "than failed: a failed probe may be tried again; when the first rate fails, "
                "one rate above it is tried before stepping down, because latency that does "
                "not grow with the rate, as a batch window's, fails low rates only).", "",
                sustained_table(answers), ""]
    targeted = [c for c in cases if c.config["scenario"] != "sustained"
                and "targets" in c.first["measurements"]]
    if targeted:
        out += ["Seed 001's targets at a fixed rate (pass only when every repeat measured to "
                "the end passed):", "", targets_table(targeted), ""]
    return out


# --- seed 001: payload sizes and the mix ----------------------------------------------------

def records(count: int) -> str:
    return f"{count:,} record" + ("" if count == 1 else "s")


def payload_label(case: Case) -> str:
    payload = case.first["measurements"].get("payload") or {}
    if payload.get("kind") == "bytes":
        return f"{payload['bytes']:,} B raw"
    if payload.get("kind") == "records":
        return f"{records(payload['records'])} {payload['format']}"
    return f"{records(case.config['records'])} {case.config['format']}"


def payload_table(cases: list[Case]) -> str:
    rows = [(c, [pair_name(c.first), payload_label(c), cell(c, "payload_bytes", 0),
                 cell(c, "consume_throughput"), cell(c, "consume_mb_s", 3), latency(c, "p50"),
                 latency(c, "p99"), ended(c)]) for c in cases]
    return table(["pair", "payload", "bytes/msg", "msg/s", "MB/s", "p50 ms", "p99 ms",
                  "ended by"], collapse_not_applicable(rows))


def mixed_table(cases: list[Case]) -> str:
    rows = []
    for case in cases:
        kinds = case.first["measurements"].get("kinds") or []
        if not kinds:
            rows.append((case, [pair_name(case.first), case.config["format"], None, None,
                                None, None, None, ended(case)]))
        for i, kind in enumerate(kinds):
            rows.append((case, [pair_name(case.first) if i == 0 else "",
                         case.config["format"] if i == 0 else "",
                         f"{records(kind['records'])} ({kind['weight']}%)",
                         _nested(case, lambda m, i=i: m["kinds"][i]["messages"], 0),
                         _nested(case, lambda m, i=i: m["kinds"][i]["payload_bytes"], 0),
                         _nested(case, lambda m, i=i: (m["kinds"][i]["latency_ms"] or {})
                                 .get("p50")),
                         _nested(case, lambda m, i=i: (m["kinds"][i]["latency_ms"] or {})
                                 .get("p99")),
                         ended(case) if i == 0 else ""]))
    return table(["pair", "format", "kind (weight)", "messages", "bytes/msg", "p50 ms",
                  "p99 ms", "ended by"], collapse_not_applicable(rows))


# --- seed 001: failing messages --------------------------------------------------------------

def _outcome(case: Case) -> str:
    outcome = case.first["measurements"].get("failure_outcome")
    if not outcome:
        return "not counted (the broker keeps no record of them)"
    return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in outcome.items())


def error_rate_table(cases: list[Case]) -> str:
    """One row per pair: the good messages' rate and p99 without and with failing messages,
    what the failing ones cost in handler runs, where they ended, and whether a good one was
    lost (a verdict from complete repeats only)."""
    by_pair: dict[str, dict[bool, Case]] = {}
    for case in cases:
        by_pair.setdefault(pair_name(case.first), {})[bool(case.config["fail_fraction"])] = case
    rows = []
    for name, sides in by_pair.items():
        clean, failing = sides.get(False), sides.get(True)
        row = [name, *(cell(c, "consume_throughput") if c else None for c in (clean, failing)),
               *(latency(c, "p99") if c else None for c in (clean, failing))]
        if failing and failing.complete:
            meant = failing.values("meant_to_fail", failing.complete)
            attempts = failing.values("failed_attempts", failing.complete)
            good_lost = max(r["measurements"].get("lost", 0)
                            + r["measurements"].get("unexpected_failures", 0)
                            for r in failing.complete)
            runs = (f"{sum(attempts) / sum(meant):.1f}" if meant and sum(meant) else None)
            row += [f"{failing.config['fail_fraction']:.0%}", runs, _outcome(failing),
                    "none" if not good_lost else f"{FAIL} {good_lost}", ended(failing)]
        else:
            row += [None, None, None, "no verdict", ended(failing) if failing else NA]
        rows.append(row)
    return table(["pair", "good msg/s, none failing", "good msg/s, some failing",
                  "good p99 ms, none failing", "good p99 ms, some failing", "failing",
                  "handler runs per failing msg", "where failing messages ended",
                  "good messages lost", "ended by (failing run)"], rows)


def error_rate_section(cases: list[Case]) -> list[str]:
    sentences = {pair_name(c.first): c.first["pair_info"].get("on_failure") for c in cases}
    return ["A share of the messages makes the handler raise, chosen by sequence number; each "
            "pair keeps its library's defaults. Rates and latency count the good messages "
            "only.", "", error_rate_table(cases), "",
            "What each library does with a failing message:", "",
            *(f"- {name}: {sentence or NA}" for name, sentence in sentences.items()), ""]


# --- seed 002: producer modes -----------------------------------------------------------------

def producer_step(case: Case) -> tuple[str, int]:
    """The mode and the number it steps: sends in flight (async) or producer processes."""
    m, mode = case.first["measurements"], case.config["producer_mode"]
    if mode == "async":
        return mode, m.get("producer_in_flight") or 1
    return mode, case.config["producers"]


def producer_table(cases: list[Case]) -> str:
    rows, previous = [], {}
    for case in cases:
        mode, step = producer_step(case)
        partitions = case.first["measurements"].get("partitions")
        key = (pair_name(case.first), mode, partitions)
        rate = case.figure("produce_throughput").value if is_clean(case) else None
        before = previous.get(key)
        efficiency = (f"{(rate / before[1]) / (step / before[0]):.0%} ({before[0]} to {step})"
                      if rate and before and step > before[0] else None)
        if rate:
            previous[key] = (step, rate)
        # An n/a row measured nothing: its sends in flight are the ones its config asked for.
        in_flight = (case.first["measurements"].get("producer_in_flight")
                     or case.config.get("in_flight"))
        rows.append((case, [pair_name(case.first), mode, shown(in_flight),
                            shown(case.config["producers"]), shown(partitions),
                            shown(case.config["messages"]),
                            cell(case, "produce_throughput"), cell(case, "produce_mb_s", 3),
                            _nested(case, lambda m: (m.get("ack_latency_ms") or {}).get("p99")),
                            efficiency, ended(case)]))
    return table(["pair", "mode", "in flight", "producer processes", "partitions",
                  "messages", "produce msg/s", "produce MB/s", "p99 send-to-ack ms",
                  "efficiency vs the step before", "ended by"], collapse_not_applicable(rows))


def producer_section(cases: list[Case]) -> list[str]:
    return ["Time to produce runs from the first send to the last acknowledgement. Efficiency: "
            "(rate / rate of the step before) / (the step's growth in processes or sends in "
            "flight), from clean cases only; 100% is linear. Send-to-ack runs from a message's "
            "intended send time to its producer telling it acknowledged. In sync mode a send "
            "returns once the client took the message: a Kafka client only queues it, so its "
            "acknowledgements come at the final flush; async with 1 in flight is the seed's "
            "wait for each acknowledgement. A pair whose consumer drains slowly gets fewer "
            "messages a case (see the experiment's description): its first sync row is the "
            "calibration that sized them.", "",
            producer_table(cases), ""]


def payload_section(cases: list[Case]) -> list[str]:
    return ["Raw bodies of each size, then stock records in each format.", "",
            payload_table(cases), ""]


def mixed_section(cases: list[Case]) -> list[str]:
    return ["Latency per kind of message: do the small ones wait behind the big?", "",
            mixed_table(cases), ""]


SECTIONS: dict[str, tuple[str, Callable[[list[Case]], list[str]]]] = {
    "scalability": ("Scalability (seed 000)", scalability_section),
    "burst": ("Bursts (seeds 000 and 001)", burst_section),
    "sustained": ("Sustained rate (seed 001)", sustained_section),
    "payload-sizes": ("Payload sizes (seed 001)", payload_section),
    "mixed": ("A realistic mix (seed 001)", mixed_section),
    "error-rate": ("Failing messages (seed 001)", error_rate_section),
    "producer-modes": ("Producer modes (seed 002)", producer_section),
}


def scenario_sections(results: list[dict], ceilings: Sequence[dict] = ()) -> list[str]:
    """The markdown of every scenario the run holds, in the seeds' order; `ceilings` are the
    document's, for what saturated a scalability sweep."""
    measured = recorded_ceilings(ceilings)
    sections = {**SECTIONS, "scalability": (SECTIONS["scalability"][0],
                                            partial(scalability_section, ceilings=measured))}
    out = []
    for name, (title, section) in sections.items():
        if (cases := scenario_cases(results, name)) and (body := section(cases)):
            out += [f"## {title}", "", *body, *measured_by(cases)]
    return out
