"""The long tables after the answer: every reliability trial, every throughput case, payload
sizes, seed 003's figures beside ours, and each pair's settings."""

from __future__ import annotations

from statistics import median

from queuebench.report.cases import (
    NA,
    Case,
    case_key,
    cases_of,
    ended_by,
    is_complete,
    latency_cell,
    measured_rows,
    num_or_na,
    pair_name,
    recorded_ceilings,
    repeat_of,
    repeat_tag,
    repeated_cases,
    row_name,
    shown,
    span,
    table,
)

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
    measured = measured_rows(results, "reliability")
    repeated = repeated_cases(results)
    repeats = any(case_key(r) in repeated for r in measured)
    for r in measured:
        m, c = r["measurements"], r["config"]
        # What a row cut short had not received yet may still have come: not a loss.
        lost = m.get("lost") if is_complete(r) else f"not received: {m.get('lost')} (cut short)"
        rows.append([row_name(r), c["format"], _stop(c, m),
                     *([repeat_of(r) + 1] if repeats else []), lost, m.get("duplicates"),
                     m.get("corrupt"), shown(m.get("time_to_produce_sec")),
                     shown(m.get("consumer_startup_sec")), shown(m.get("graceful_stop_sec")),
                     shown(m.get("time_to_consume_sec")), ended_by(r),
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
    repeated = repeated_cases(results)
    for r in measured_rows(results, "reliability"):
        m = r["measurements"]
        if m.get("lost_seqs") or m.get("duplicate_seqs"):
            missing = "lost" if is_complete(r) else "not received (cut short)"
            tag = f" {tag}" if (tag := repeat_tag(r, repeated)) else ""
            lines.append(f"- {row_name(r)} {r['config']['format']} {r['config']['stop']}{tag}: "
                         f"{missing} {m.get('lost_seqs') or 'none'}, duplicated "
                         f"{m.get('duplicate_seqs') or 'none'} (stopped after "
                         f"{num_or_na(m.get('stopped_after'))} received)")
    return lines


def _median_cell(case: Case, key: str) -> object:
    value = case.figure(key).value
    return shown(value if value is None or not case.repeated else float(value))


def _repeated_row(case: Case) -> list[object]:
    """A case run more than once: the median of its complete repeats (of those cut short if
    none was complete) with the lowest and highest repeat, flagged when they spread widely."""
    c, figures = case.config, case.figures()
    cells = {label: figure.cell(digits) for label, (figure, digits) in figures.items()}
    corrupt = case.values("corrupt")
    highest = [(r["measurements"].get("latency_ms") or {}).get("max") for r in case.basis]
    return [row_name(case.first), c["format"], shown(c["messages"]),
            span(case.values("payload_bytes")), _median_cell(case, "time_to_produce_sec"),
            cells["produce msg/s"], _median_cell(case, "time_to_consume_sec"),
            cells["consume msg/s"], cells["consume MB/s"],
            _median_cell(case, "drain_throughput"), cells["p50 ms"], cells["p95 ms"],
            cells["p99 ms"], shown(max((h for h in highest if h is not None), default=None)),
            span(case.values("successful")), sum(corrupt) if corrupt else None,
            ", ".join(dict.fromkeys(str(ended_by(r) or NA) for r in case.basis)),
            case.repeats()]


def throughput_table(results: list[dict]) -> str:
    rows = []
    cases = [case for case in cases_of(results, "throughput") if case.measured]
    repeats = any(case.repeated for case in cases)
    for case in cases:
        if case.repeated:
            rows.append(_repeated_row(case))
            continue
        r = case.first
        m, c = r["measurements"], r["config"]
        rows.append([row_name(r), c["format"], shown(c["messages"]), shown(m.get("payload_bytes")),
                     shown(m.get("time_to_produce_sec")), shown(m.get("produce_throughput"), 1),
                     shown(m.get("time_to_consume_sec")), shown(m.get("consume_throughput"), 1),
                     shown(m.get("consume_mb_s"), 3), shown(m.get("drain_throughput"), 1),
                     latency_cell(m, "p50"), latency_cell(m, "p95"),
                     latency_cell(m, "p99"), latency_cell(m, "max"), shown(m.get("successful")),
                     m.get("corrupt"), ended_by(r)] + (
                         [case.repeats()] if repeats else []))
    # A run cut by its deadline has not lost what it did not receive yet: it shows as fewer
    # received, ended by "incomplete (deadline)", and its rates count only what arrived.
    return table(["pair", "format", "messages", "bytes/msg", "produce s", "produce msg/s",
                  "consume s", "consume msg/s", "consume MB/s", "drain msg/s", "p50 ms", "p95 ms",
                  "p99 ms", "max ms", "received", "corrupt", "ended by",
                  *(["repeats"] if repeats else [])],
                 rows)


def ceiling_table(document: dict) -> str | None:
    """Each complete throughput case beside its broker's own ceiling at about its message size
    (the envelope counted, as the tools send it): what share of the broker the pair reaches."""
    measured = recorded_ceilings(document.get("ceilings", []))
    rows = []
    for case in cases_of(document["results"], "throughput"):
        if not case.complete or case.config.get("rate"):
            continue
        ceiling = case.broker_ceiling(measured)
        if ceiling is None:
            continue
        produce, drain = case.figure("produce_throughput"), case.figure("drain_throughput")
        rows.append([row_name(case.first), case.config["format"],
                     shown(case.figure("payload_bytes").value), ceiling.tool,
                     shown(ceiling.size_bytes), shown(produce.value, 1),
                     shown(ceiling.produce_msg_s, 1), _share(produce.value, ceiling.produce_msg_s),
                     shown(drain.value, 1), shown(ceiling.consume_msg_s, 1),
                     _share(drain.value, ceiling.consume_msg_s), ceiling.measured_at[:10]])
    if not rows:
        return None
    return table(["pair", "format", "bytes/msg", "broker's own tool", "its bytes/msg",
                  "produce msg/s", "ceiling", "share", "drain msg/s", "ceiling", "share",
                  "ceiling measured"], rows)


def _share(value: float | None, ceiling: float) -> str:
    return f"{value / ceiling:.0%}" if value and ceiling else "n/a"


def size_table(sizes: list[dict]) -> str:
    if not sizes:
        return "No payload sizes were recorded."
    pairs = list(dict.fromkeys(pair for s in sizes for pair in s["pairs"]))  # merged runs differ

    def verdict(fit: dict | None) -> str | None:
        if fit is None:
            return None
        return "fits" if fit["fits"] else f"**No Go** ({shown(fit['wire_bytes'])} on the wire)"

    rows = [[shown(s["records"]), s["format"], shown(s["bytes"])]
            + [verdict(s["pairs"].get(p)) for p in pairs] for s in sizes]
    return table(["records", "format", "bytes", *pairs], rows)


# A settings cell lists this many short settings; the rest are in the pair's own section.
SHORT_SETTINGS = 4
SHORT_VALUE = 16  # characters of a value shown in the table


def _pair_infos(results: list[dict]) -> dict[str, dict]:
    seen: dict[str, dict] = {}
    for r in results:
        seen.setdefault(pair_name(r), r["pair_info"])
    return seen


def _short_settings(settings: dict[str, object]) -> str:
    """The first few settings whose values are short, and how many more the section lists."""
    short = [f"{k}={v}" for k, v in settings.items() if len(str(v)) <= SHORT_VALUE]
    more = len(settings) - len(short[:SHORT_SETTINGS])
    return ", ".join(short[:SHORT_SETTINGS]) + (f", +{more} more" if more else "") or "defaults"


def _size_limit(info: dict) -> str:
    limit = info["size_limit"]["max_bytes"]
    return shown(limit) if limit else "none"


def settings_table(results: list[dict]) -> str:
    rows = [[name, f"{info['library']} {info.get('library_version') or NA}",
             info.get("broker_version") or NA, _short_settings(info["delivery_settings"]),
             info["capabilities"].get("serializer"), info.get("concurrency_unit"),
             _size_limit(info)]
            for name, info in _pair_infos(results).items()]
    return table(["pair", "library", "broker", "delivery settings", "serializer",
                  "concurrency unit", "size limit"], rows)


def _broker_durability(results: list[dict], pair: str) -> list[str]:
    """The broker durability modes the pair's rows ran in, in words, each once."""
    return list(dict.fromkeys(r["pair_info"]["broker_durability"]["words"] for r in results
                              if r["pair_info"].get("pair") == pair
                              and r["pair_info"].get("broker_durability")))


def pair_details(results: list[dict]) -> list[str]:
    """A section per pair: how it acks and what a dead worker costs, then each variant's note
    and every setting."""
    by_pair: dict[str, list[dict]] = {}
    for info in _pair_infos(results).values():
        by_pair.setdefault(info["pair"], []).append(info)
    lines = []
    for pair, infos in by_pair.items():
        capabilities, limit = infos[0]["capabilities"], infos[0]["size_limit"]
        lines += [f"### {pair}", "",
                  f"- **acks:** {capabilities['ack']}",
                  f"- **when a worker dies:** {capabilities['on_worker_killed']}",
                  *([f"- **redelivery after:** {capabilities['redelivery_after']}"]
                    if capabilities.get("redelivery_after") else []),
                  *([f"- **durability, as the library declares it:** "
                     f"{capabilities['durability']}"] if capabilities.get("durability") else []),
                  *(f"- **the broker's durability:** {words}"
                    for words in _broker_durability(results, pair)),
                  f"- **bytes:** {capabilities['carries_bytes']}",
                  f"- **size limit:** {_size_limit(infos[0])} bytes; over it: "
                  f"{limit.get('error') or NA}"]
        for info in infos:
            settings = "; ".join(f"`{k}={v}`" for k, v in info["delivery_settings"].items())
            note = f"{info['variant_note'].rstrip('.')}. " if info.get("variant_note") else ""
            lines.append(f"- **{info['variant']}:** {note}Settings: {settings or 'defaults'}.")
        lines.append("")
    return lines


def seed_table(results: list[dict]) -> str | None:
    rows = []
    for case in cases_of(results):
        c = case.config
        seed = SEED_FIGURES.get((c["pair"], c["format"], c["scenario"], c["messages"]))
        if seed is None or not case.complete or c.get("stop") == "graceful":
            continue
        ours = [median(values) if (values := case.values(key, case.complete)) else None
                for key in ("time_to_produce_sec", "time_to_consume_sec")]
        repeats = f" (median of {n})" if (n := len(case.complete)) > 1 else ""
        rows.append([row_name(case.first) + repeats, c["format"], c["scenario"],
                     shown(c["messages"]), shown(seed[0]), shown(ours[0]), shown(seed[1]),
                     shown(ours[1])])
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

