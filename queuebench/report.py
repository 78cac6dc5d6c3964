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


def _ended_by(result: dict) -> object:
    outcome = result["measurements"].get("outcome")
    return outcome if _complete(result) else f"incomplete ({outcome or result['status']})"


def _corrupt(result: dict) -> int:
    return result["measurements"].get("corrupt") or 0  # files before the count lack it


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
    return _fmt(m["latency_ms"].get(key)) if m.get("latency_ms") else None


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
    # Grouped by the stops that ran: a pair never killed cannot claim to survive a kill.
    groups: dict[tuple[str | None, str], list[str]] = {}
    for name, (lost, dup, corrupt) in losses.items():
        if lost == dup == corrupt == 0:
            groups.setdefault(scope[name], []).append(name)
    for (label, claim), names in sorted(groups.items(), key=lambda g: g[0][0] is not None):
        title = "Most resilient" + (f" ({label})" if label else "")
        lines.append(f"- **{title}:** {', '.join(names)}: no message lost or duplicated {claim}."
                     + (_kill_cost(by_pair, names) if label is None else ""))
    no_loss = [n for n, (lost, dup, _) in losses.items() if lost == 0 and dup > 0]
    if no_loss:
        lines.append("- **No loss, but duplicates:** " + "; ".join(
            f"{n} ({losses[n][1]} duplicated" + (f"; {scope[n][0]})" if scope[n][0] else ")")
            for n in no_loss) + ".")
    lossy = [n for n, (lost, _, _) in losses.items() if lost > 0]
    if lossy:
        details = []
        for name in lossy:
            runs = [r for r in by_pair[name] if r["measurements"].get("lost")]
            details.append(f"{name}: " + ", ".join(
                f"{r['measurements']['lost']} of {r['measurements']['total']} on "
                f"{r['config']['stop']} ({r['config']['format']})" for r in runs))
        lines.append("- **Loses messages:** " + "; ".join(details) + ".")
    return lines


def _num(value: object, digits: int = 2) -> str:
    return NA if value is None else str(_fmt(value, digits))


def _ranked(result: dict) -> bool:
    return (result["measurements"].get("time_to_consume_sec") or 0) >= MIN_RANKED_SEC


def _behind(m: dict) -> str:
    """The count and the time a consume rate stands on."""
    return f"{_num(m.get('successful'))} messages in {_num(m.get('time_to_consume_sec'), 1)} s"


def _too_short(result: dict) -> str:
    m = result["measurements"]
    seconds = m.get("time_to_consume_sec")
    over = (f"over {_fmt(seconds, 1 if seconds >= 0.1 else 3)} s" if seconds
            else "over an unrecorded time")
    return (f"{_row_name(result)}, {_fmt(m['consume_throughput'], 1)} msg/s measured {over}, "
            "too short to rank")


def _fastest(results: list[dict]) -> list[str]:
    """Fastest per format (and per broker): complete runs that received every message unchanged,
    ranked only where consuming took at least MIN_RANKED_SEC; the shorter ones are named apart."""
    lines = []
    for fmt in sorted({r["config"]["format"] for r in _measured(results, "throughput")}):
        runs = [r for r in _ok(results, "throughput") if r["config"]["format"] == fmt
                and r["measurements"].get("consume_throughput")
                and not r["measurements"].get("lost") and not _corrupt(r)]
        if not runs:
            lines.append(f"- **Fastest ({fmt}):** none ranked: no run received every message "
                         "unchanged before it ended.")
            continue
        ranked = [r for r in runs if _ranked(r)]
        short = "; ".join(_too_short(r) for r in sorted(runs, key=_consume_rate, reverse=True)
                          if not _ranked(r))
        if ranked:
            m = (best := max(ranked, key=_consume_rate))["measurements"]
            lines.append(f"- **Fastest ({fmt}):** {_row_name(best)}, "
                         f"{_fmt(m['consume_throughput'], 1)} msg/s consumed ({_behind(m)}), "
                         f"{_num(m.get('produce_throughput'), 1)} msg/s produced, "
                         f"p99 latency {_latency(m, 'p99') or NA} ms."
                         + (f" Not ranked: {short}." if short else ""))
        else:
            lines.append(f"- **Fastest ({fmt}):** no rate was measured long enough to rank "
                         f"(at least {MIN_RANKED_SEC:g} s of consuming): {short}.")
        brokers = sorted({r["pair_info"]["broker"] for r in runs})
        if len(brokers) > 1:
            parts = []
            for broker in brokers:
                own = [r for r in runs if r["pair_info"]["broker"] == broker]
                if own_ranked := [r for r in own if _ranked(r)]:
                    m = (best := max(own_ranked, key=_consume_rate))["measurements"]
                    parts.append(f"{broker}: {_row_name(best)} "
                                 f"{_fmt(m['consume_throughput'], 1)} msg/s ({_behind(m)})")
                else:
                    parts.append(f"{broker}: none ranked ("
                                 f"{_too_short(max(own, key=_consume_rate))})")
            lines.append(f"- **Fastest per broker ({fmt}):** " + "; ".join(parts) + ".")
    return lines


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
    if cut := [r for r in measured if not _complete(r)]:
        lines.append("- **Incomplete (cut short; no verdict above counts them):** " + "; ".join(
            " ".join(filter(None, (r["config"]["scenario"], _row_name(r), r["config"]["format"],
                                   r["config"].get("stop"))))
            + f" ({_num(r['measurements'].get('successful'))} of "
              f"{_num(r['measurements'].get('total'))} received, ended by "
              f"{r['measurements'].get('outcome') or NA})" for r in cut) + ".")
    for r in results:
        if r["status"] == "no-go":
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
    rows = []
    for r in _measured(results, "reliability"):
        m, c = r["measurements"], r["config"]
        # What a row cut short had not received yet may still have come: not a loss.
        lost = m.get("lost") if _complete(r) else f"not received: {m.get('lost')} (cut short)"
        rows.append([_row_name(r), c["format"], _stop(c, m), lost, m.get("duplicates"),
                     m.get("corrupt"), _fmt(m.get("time_to_produce_sec")),
                     _fmt(m.get("consumer_startup_sec")), _fmt(m.get("graceful_stop_sec")),
                     _fmt(m.get("time_to_consume_sec")), _ended_by(r),
                     _broker_verdict(m.get("broker_check"))])
    return table(["pair", "format", "stop", "lost", "duplicated", "corrupt", "produce s",
                  "startup s", "graceful stop s", "consume s (incl. start-up)", "ended by",
                  "broker check"], rows)


def _stop(config: dict, m: dict) -> str:
    # A stop that found no task in hand tests less than it claims: say so on its row. (Results
    # from before the runner aimed its stops lack the key.)
    between = m.get("stopped_mid_task") is False and config["work_ms"] > 0
    return config["stop"] + (" (between tasks)" if between else "")


def lost_detail(results: list[dict]) -> list[str]:
    lines = []
    for r in _measured(results, "reliability"):
        m = r["measurements"]
        if m.get("lost_seqs") or m.get("duplicate_seqs"):
            missing = "lost" if _complete(r) else "not received (cut short)"
            lines.append(f"- {_row_name(r)} {r['config']['format']} {r['config']['stop']}: "
                         f"{missing} {m.get('lost_seqs') or 'none'}, duplicated "
                         f"{m.get('duplicate_seqs') or 'none'} (stopped after "
                         f"{_num(m.get('stopped_after'))} received)")
    return lines


def throughput_table(results: list[dict]) -> str:
    rows = []
    for r in _measured(results, "throughput"):
        m, c = r["measurements"], r["config"]
        rows.append([_row_name(r), c["format"], _fmt(c["messages"]), _fmt(m.get("payload_bytes")),
                     _fmt(m.get("time_to_produce_sec")), _fmt(m.get("produce_throughput"), 1),
                     _fmt(m.get("time_to_consume_sec")), _fmt(m.get("consume_throughput"), 1),
                     _fmt(m.get("consume_mb_s"), 3), _latency(m, "p50"), _latency(m, "p95"),
                     _latency(m, "p99"), _latency(m, "max"), _fmt(m.get("successful")),
                     m.get("corrupt"), _ended_by(r)])
    # A run cut by its deadline has not lost what it did not receive yet: it shows as fewer
    # received, ended by "incomplete (deadline)", and its rates count only what arrived.
    return table(["pair", "format", "messages", "bytes/msg", "produce s", "produce msg/s",
                  "consume s", "consume msg/s", "consume MB/s", "p50 ms", "p95 ms", "p99 ms",
                  "max ms", "received", "corrupt", "ended by"], rows)


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
             info["capabilities"]["carries_bytes"], info["capabilities"].get("serializer"),
             _fmt(info["size_limit"]["max_bytes"]) if info["size_limit"]["max_bytes"] else "none"]
            for name, info in seen.items()]
    return table(["pair", "library", "broker", "delivery settings", "acks", "when a worker dies",
                  "bytes", "serializer", "size limit"], rows)


def seed_table(results: list[dict]) -> str | None:
    rows = []
    for r in results:
        c = r["config"]
        seed = SEED_FIGURES.get((c["pair"], c["format"], c["scenario"], c["messages"]))
        if seed is None or not _complete(r) or c.get("stop") == "graceful":
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
