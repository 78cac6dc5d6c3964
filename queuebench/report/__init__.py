"""Renders a run's results.json as the markdown report a person reads to choose, with
`results.csv` and charts beside it.

A separate pass over the results: it never imports an adapter, so any results file can be
re-rendered anywhere. The answer comes first (a matrix of pairs against the questions measured,
then the pair to choose for each need), then the findings with their evidence, the charts, the
tables, each pair's settings, and the manifest. A figure that was not measured is shown as
"n/a", never filled in.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from queuebench.engine.results import write_atomically
from queuebench.report.answer import render_answer
from queuebench.report.cases import (
    SPREAD_LIMIT,
    UNSTABLE,
    cases_of,
    repeat_tag,
    repeated_cases,
    resumed_text,
    row_name,
    table,
)
from queuebench.report.export import results_csv
from queuebench.report.faults import FAULTS_CHART, faults_section
from queuebench.report.findings import findings
from queuebench.report.scenarios import in_scenario, scenario_sections
from queuebench.report.tables import (
    ceiling_table,
    config_rows,
    lost_detail,
    pair_details,
    reliability_table,
    seed_table,
    settings_table,
    size_table,
    throughput_table,
)

CSV_FILE = "results.csv"
NO_CHARTS = ("Charts need matplotlib: `pip install 'queuebench[charts]'`, then "
             "`queuebench report FOLDER` draws them from results.json.")


def write_report(folder: Path, document: dict) -> str:
    """Write `results.csv` and the charts into `folder`; return the report that links them."""
    write_atomically(folder / CSV_FILE, results_csv(document))
    return render(document, charts=draw_charts(folder, document))


def draw_charts(folder: Path, document: dict) -> list[str]:
    """Markdown lines linking each chart drawn, or saying how to get them."""
    try:
        from queuebench.report import charts  # matplotlib is an optional extra
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("matplotlib"):
            raise
        return [NO_CHARTS]
    drawn = charts.draw(document, folder)
    return [f"![{title}]({name})" for title, name in drawn] or ["No figure to chart."]


def harness_rows(results: list[dict]) -> list[list[object]]:
    """How much of the machine the harness itself took while the repeats ran, beside how busy
    the machine was: a figure is the library's and the broker's only where the harness's share
    is small."""
    hosts = [r["measurements"]["host"] for r in results
             if (r.get("measurements") or {}).get("host", {}).get("harness_cpu_pct") is not None]
    if not hosts:
        return []
    own = sorted(h["harness_cpu_pct"] for h in hosts)
    busy = sorted(h["cpu_busy_pct"] for h in hosts if h.get("cpu_busy_pct") is not None)
    return [["harness CPU, % of the machine", f"median {statistics.median(own):.1f}, highest "
             f"{own[-1]:.1f} over {len(own)} repeats"
             + (f" (machine busy: median {statistics.median(busy):.1f}%)" if busy else "")]]


def render(document: dict, charts: list[str] | None = None) -> str:
    """The report; `charts` are the lines of its Charts section (none: no section)."""
    run, every = document["run"], document["results"]
    env = document["environment"]
    # The seeds' scenarios have sections of their own; the rest of the report is the others'.
    results = [r for r in every if not in_scenario(r)]
    status = "complete" if run["complete"] else "INCOMPLETE (the run stopped early)"
    out = [f"# queuebench report: {run['name']}", "",
           f"Run {run['started_at']} on {env.get('host')}{resumed_text(run.get('resumed', []))}"
           f", {status}. Command: `{run['command']}`",
           "", "## The answer", "", *render_answer(document), "",
           "## Findings", "", *(findings(results) if results else ["No findings beyond the "
                                                                    "scenarios' tables."]), ""]
    if charts:
        out += ["## Charts", "", *(line + "\n" for line in charts)]
    if any(r["config"]["scenario"] == "reliability" for r in results):
        out += ["## Reliability", "",
                "Produce with the consumer off, start it, stop it (graceful) or SIGKILL it "
                "(kill) halfway through a task once half are processed, restart it, count what "
                "the ledger received.", "",
                reliability_table(results), ""]
    if details := lost_detail(results):
        out += ["Sequence numbers lost or duplicated:", "", *details, ""]
    if any(r["config"]["scenario"] == "throughput" for r in results):
        out += ["## Throughput", "",
                "Consumers running and warm first; consume time runs from the first send to "
                "the last receipt, the drain rate from the first receipt to the last; latency "
                "runs from each message's intended send time (its slot in a paced rate) to its "
                "receipt. A row \"@ N msg/s\" was paced at that rate."
                + (" A case run more than once shows the median of its complete repeats, with "
                   "the lowest and highest repeat in brackets (a latency percentile is taken over "
                   "every repeat's latencies together when each repeat kept its histogram); a "
                   f"spread over {SPREAD_LIMIT:.0%} of the median is marked{UNSTABLE}."
                   if any(case.repeated for case in cases_of(results, "throughput")) else ""),
                "", throughput_table(results), ""]
    out += scenario_sections(every, document.get("ceilings", []))
    out += faults_section(results, charted=any(f"]({FAULTS_CHART})" in line
                                               for line in charts or []))
    if ceilings := ceiling_table({**document, "results": results}):
        out += ["## Beside the broker's own ceiling", "",
                "Each broker's own load tool on this machine (`make ceilings`) at about the "
                "pair's message size: a pair far below it is held back by its library or its "
                "settings, not by the broker.", "", ceilings, ""]
    out += ["## Payload sizes and limits", "", size_table(document.get("payload_sizes", [])), ""]
    if seed := seed_table(results):
        out += ["## Beside the seed", "",
                "Seed 003 timed these by hand against AWS-hosted brokers (SQS, MSK) and a local "
                "Redis; ours ran on the machine in the manifest. Compare shapes, not seconds.", "",
                seed, ""]
    errors = [r for r in every if r["status"] == "error"]
    if errors:
        repeated = repeated_cases(every)
        out += ["## Errors", "", *[f"- {r['config']['scenario']} {row_name(r)} "
                                   f"{r['config']['format']}"
                                   + (f" {tag}" if (tag := repeat_tag(r, repeated)) else "")
                                   + f": {r['error']}" for r in errors], ""]
    out += ["## Pairs and delivery settings", "", settings_table(every), "",
            *pair_details(every)]
    out += ["## Manifest", "",
            table(["what", "value"], [*[[k, v] for k, v in env.items() if k != "cluster"],
                                      *harness_rows(every), *config_rows(every)]),
            ""]
    if cluster := env.get("cluster"):
        out += cluster_manifest(cluster, every)
    return "\n".join(out)


def cluster_manifest(cluster: dict, results: list[dict]) -> list[str]:
    """The nodes the consumers ran on, each clock's measured offset, and where each ran."""
    nodes = table(["node", "host", "cores", "memory GiB", "python", "queuebench",
                   "clock offset ms", "round trip ms"],
                  [[n["node"], n["host"], n["cores"], n["memory_gib"], n["python"],
                    n["queuebench"], n["clock_offset_ms"], n["clock_rtt_ms"]]
                   for n in cluster["nodes"]])
    placed = [[f"{r['config']['scenario']} {row_name(r)} {r['config']['format']}",
               ", ".join(f"{c['node']} ({c['host']})"
                         for c in r["measurements"]["consumer_nodes"]),
               ", ".join(map(str, r["measurements"].get("producer_nodes") or [])) or "this machine"]
              for r in results if r["measurements"].get("consumer_nodes")]
    return [f"### Cluster: {cluster['address']}, {cluster['engine']}", "",
            "Receive stamps, and the send stamps of producers on the nodes, were moved onto this "
            "machine's clock by each node's offset, "
            "measured at the start (Cristian's algorithm: the offset is good to half the round "
            "trip).", "", nodes, "",
            *(["Where each consumer process ran (node, host), and each producer process "
               "(node), in process order:", "",
               table(["case", "consumer nodes", "producer nodes"], placed), ""] if placed else [])]
