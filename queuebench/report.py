"""Renders a run's results.json as the markdown report a person reads to choose.

A separate pass over the results: it never imports an adapter, so any results file can be
re-rendered anywhere. The answer comes first, then the tables, then the manifest. A figure that
was not measured is shown as "n/a", never filled in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

NA = "n/a"

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


def _ok(results: list[dict], scenario: str) -> list[dict]:
    return [r for r in results if r["config"]["scenario"] == scenario and r["status"] == "ok"]


def _row_name(result: dict) -> str:
    config = result["config"]
    variant = "" if config["variant"] == "default" else f" [{config['variant']}]"
    return f"{config['pair']}{variant}"


def _fmt(value: object, digits: int = 2) -> object:
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def _latency(m: dict, key: str) -> object:
    return _fmt(m["latency_ms"][key]) if m.get("latency_ms") else None


def _consume_rate(result: dict) -> float:
    return result["measurements"]["consume_throughput"]


def _kill_cost(by_pair: dict[str, list[dict]], names: list[str]) -> str:
    """What surviving a kill cost in time: consume time after a kill against a graceful stop."""
    costs = []
    for name in names:
        fmt = by_pair[name][0]["config"]["format"]
        seconds = {r["config"]["stop"]: r["measurements"]["time_to_consume_sec"]
                   for r in by_pair[name] if r["config"]["format"] == fmt}
        if seconds.get("kill") and seconds.get("graceful"):
            costs.append(f"{name} {_fmt(seconds['kill'], 1)} s after a kill against "
                         f"{_fmt(seconds['graceful'], 1)} s after a graceful stop ({fmt})")
    return f" Time to consume everything: {'; '.join(costs)}." if costs else ""


def answer(results: list[dict]) -> list[str]:
    """The headline: most resilient, fastest, who cannot take the payload, who failed."""
    lines = []
    reliability = _ok(results, "reliability")
    if reliability:
        by_pair: dict[str, list[dict]] = {}
        for r in reliability:
            by_pair.setdefault(_row_name(r), []).append(r)
        losses = {name: (sum(r["measurements"]["lost"] for r in rs),
                         sum(r["measurements"]["duplicates"] for r in rs), len(rs))
                  for name, rs in by_pair.items()}
        clean = [n for n, (lost, dup, _) in losses.items() if lost == 0 and dup == 0]
        no_loss = [n for n, (lost, dup, _) in losses.items() if lost == 0 and dup > 0]
        if clean:
            lines.append(f"- **Most resilient:** {', '.join(clean)}: no message lost or "
                         "duplicated in any stop or kill." + _kill_cost(by_pair, clean))
        if no_loss:
            lines.append("- **No loss, but duplicates:** " + "; ".join(
                f"{n} ({losses[n][1]} duplicated)" for n in no_loss) + ".")
        lossy = [n for n, (lost, _, _) in losses.items() if lost > 0]
        if lossy:
            details = []
            for name in lossy:
                runs = [r for r in by_pair[name] if r["measurements"]["lost"]]
                details.append(f"{name}: " + ", ".join(
                    f"{r['measurements']['lost']} of {r['measurements']['total']} on "
                    f"{r['config']['stop']} ({r['config']['format']})" for r in runs))
            lines.append("- **Loses messages:** " + "; ".join(details) + ".")
    for fmt in sorted({r["config"]["format"] for r in _ok(results, "throughput")}):
        runs = [r for r in _ok(results, "throughput") if r["config"]["format"] == fmt
                and r["measurements"].get("consume_throughput")]
        if runs:
            best = max(runs, key=_consume_rate)
            m = best["measurements"]
            lines.append(f"- **Fastest ({fmt}):** {_row_name(best)}, "
                         f"{_fmt(m['consume_throughput'], 1)} msg/s consumed, "
                         f"{_fmt(m['produce_throughput'], 1)} msg/s produced, "
                         f"p99 latency {_latency(m, 'p99')} ms.")
            brokers = sorted({r["pair_info"]["broker"] for r in runs})
            if len(brokers) > 1:
                fastest = [max((r for r in runs if r["pair_info"]["broker"] == broker),
                               key=_consume_rate) for broker in brokers]
                lines.append(f"- **Fastest per broker ({fmt}):** " + "; ".join(
                    f"{r['pair_info']['broker']}: {_row_name(r)} "
                    f"{_fmt(r['measurements']['consume_throughput'], 1)} msg/s" for r in fastest)
                    + ".")
    for r in results:
        if r["status"] == "no-go":
            lines.append(f"- **No Go** {_row_name(r)} with {r['config']['records']:,} records "
                         f"as {r['config']['format']}: {r['error']}")
    errors = [r for r in results if r["status"] == "error"]
    if errors:
        lines.append(f"- **Errors:** {len(errors)} experiment(s) failed; see the Errors section.")
    return lines or ["- No experiment finished; nothing to conclude."]


def reliability_table(results: list[dict]) -> str:
    rows = []
    for r in _ok(results, "reliability"):
        m, c = r["measurements"], r["config"]
        check = m["broker_check"]
        verdict = (("agrees" if check["agrees"] else "DISAGREES") + f": {check['detail']}"
                   if check["checked"] else check["detail"])
        rows.append([_row_name(r), c["format"], _stop(c, m), m["lost"], m["duplicates"],
                     _fmt(m["time_to_produce_sec"]), _fmt(m["consumer_startup_sec"]),
                     _fmt(m["graceful_stop_sec"]), _fmt(m["time_to_consume_sec"]),
                     m["outcome"], verdict])
    return table(["pair", "format", "stop", "lost", "duplicated", "produce s", "startup s",
                  "graceful stop s", "consume s (incl. start-up)", "ended by", "broker check"],
                 rows)


def _stop(config: dict, m: dict) -> str:
    # A stop that found no task in hand tests less than it claims: say so on its row. (Results
    # from before the runner aimed its stops lack the key.)
    between = m.get("stopped_mid_task") is False and config["work_ms"] > 0
    return config["stop"] + (" (between tasks)" if between else "")


def lost_detail(results: list[dict]) -> list[str]:
    lines = []
    for r in _ok(results, "reliability"):
        m = r["measurements"]
        if m["lost_seqs"] or m["duplicate_seqs"]:
            lines.append(f"- {_row_name(r)} {r['config']['format']} {r['config']['stop']}: "
                         f"lost {m['lost_seqs'] or 'none'}, duplicated "
                         f"{m['duplicate_seqs'] or 'none'} (stopped after "
                         f"{m['stopped_after']} received)")
    return lines


def throughput_table(results: list[dict]) -> str:
    rows = []
    for r in _ok(results, "throughput"):
        m, c = r["measurements"], r["config"]
        rows.append([_row_name(r), c["format"], _fmt(c["messages"]), _fmt(m["payload_bytes"]),
                     _fmt(m["time_to_produce_sec"]), _fmt(m["produce_throughput"], 1),
                     _fmt(m["time_to_consume_sec"]), _fmt(m["consume_throughput"], 1),
                     _fmt(m["consume_mb_s"], 3), _latency(m, "p50"), _latency(m, "p95"),
                     _latency(m, "p99"), _latency(m, "max"), _fmt(m["successful"]),
                     m["outcome"]])
    # A run cut by its deadline has not lost what it did not receive yet: it shows as fewer
    # received, ended by "deadline", and its rates count only what arrived.
    return table(["pair", "format", "messages", "bytes/msg", "produce s", "produce msg/s",
                  "consume s", "consume msg/s", "consume MB/s", "p50 ms", "p95 ms", "p99 ms",
                  "max ms", "received", "ended by"], rows)


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
        seen.setdefault(_row_name(r), r["pair_info"])
    rows = [[name, f"{info['library']} {info.get('library_version') or NA}",
             info.get("broker_version") or NA,
             ", ".join(f"{k}={v}" for k, v in info["delivery_settings"].items()) or "defaults",
             info["capabilities"]["ack"], info["capabilities"]["on_worker_killed"],
             info["capabilities"]["carries_bytes"],
             _fmt(info["size_limit"]["max_bytes"]) if info["size_limit"]["max_bytes"] else "none"]
            for name, info in seen.items()]
    return table(["pair", "library", "broker", "delivery settings", "acks", "when a worker dies",
                  "bytes", "size limit"], rows)


def seed_table(results: list[dict]) -> str | None:
    rows = []
    for r in results:
        c = r["config"]
        seed = SEED_FIGURES.get((c["pair"], c["format"], c["scenario"], c["messages"]))
        if seed is None or r["status"] != "ok" or c.get("stop") == "graceful":
            continue
        m = r["measurements"]
        rows.append([_row_name(r), c["format"], c["scenario"], _fmt(c["messages"]),
                     _fmt(seed[0]), _fmt(m["time_to_produce_sec"]), _fmt(seed[1]),
                     _fmt(m["time_to_consume_sec"])])
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
            "Consumer running first; consume time runs from the first send to the last receipt; "
            "latency is send to receipt.", "", throughput_table(results), ""]
    out += ["## Payload sizes and limits", "", size_table(document.get("payload_sizes", [])), ""]
    if seed := seed_table(results):
        out += ["## Beside the seed", "",
                "Seed 003 timed these by hand against AWS-hosted brokers (SQS, MSK) and a local "
                "Redis; ours ran on the machine in the manifest. Compare shapes, not seconds.", "",
                seed, ""]
    errors = [r for r in results if r["status"] == "error"]
    if errors:
        out += ["## Errors", "", *[f"- {r['config']['scenario']} {_row_name(r)} "
                                   f"{r['config']['format']}: {r['error']}" for r in errors], ""]
    out += ["## Pairs and delivery settings", "", settings_table(results), ""]
    out += ["## Manifest", "",
            table(["what", "value"], [*[[k, v] for k, v in env.items()], *config_rows(results)]),
            ""]
    return "\n".join(out)
