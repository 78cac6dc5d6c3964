"""Charts drawn from results.json into the run folder, linked from report.md.

matplotlib (the optional extra `charts`) is imported here only, so a report renders without it.
Few charts, each with every pair on it: throughput with the spread across repeats, latency
percentile curves (HDR style), messages received per second with the stops marked, and through
each fault beyond the consumer with its time in force shaded; for the seeds' scenarios,
throughput and p99 against consumers, MB/s and p99 against payload size, and each burst's
backlog over time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never a window, and no display needed

import matplotlib.pyplot as plt
from hdrh.histogram import HdrHistogram
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from queuebench.engine.metrics import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS
from queuebench.report.cases import Case, cases_of, is_clean, pair_name, row_name
from queuebench.report.faults import FAULTS_CHART, fault_row_name, fault_rows
from queuebench.report.scenarios import in_scenario, payload_label, scenario_cases, task, units

# Percentiles a latency curve is drawn through; their x position is 1 / (1 - p), on a log axis.
CURVE_PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99)
SUMMARY_PERCENTILES = {50.0: "p50", 95.0: "p95", 99.0: "p99"}  # what older results kept
# A chart with more curves than this shows each broker's lowest-latency case only.
MAX_CURVES = 10
STOP_EVENTS = ("consumers killed", "consumers asked to stop")


def draw(document: dict, folder: Path) -> list[tuple[str, str]]:
    """Draw every chart the results hold; (title, file name) of each."""
    drawn = []
    # The scenarios' rows have charts of their own; the first three are the other rows'.
    plain = {**document, "results": [r for r in document["results"] if not in_scenario(r)]}
    for name, chart, source in (("throughput.png", _throughput, plain),
                                ("latency.png", _latency, plain),
                                ("received.png", _received, plain),
                                (FAULTS_CHART, _faults, plain),
                                ("scalability.png", _scalability, document),
                                ("payload-sizes.png", _payload_sizes, document),
                                ("burst.png", _burst, document)):
        figure = chart(source)
        if figure is None:
            continue
        figure.savefig(folder / name, dpi=100, bbox_inches="tight")
        title = figure.axes[0].get_title() or figure.texts[0].get_text()
        drawn.append((title.splitlines()[0], name))
        plt.close(figure)
    return drawn


def _source(document: dict) -> str:
    run = document["run"]
    return f"run {run['name']}, {run['started_at'][:16]}, {document['environment'].get('host')}"


def _unpaced(document: dict) -> list[Case]:
    return [case for case in cases_of(document["results"], "throughput")
            if case.measured and case.config.get("rate") is None]


def _throughput(document: dict):
    """Median consume rate per pair and format, with the lowest and highest repeat."""
    cases = [c for c in _unpaced(document) if c.figure("consume_throughput").value]
    if not cases:
        return None
    names = list(dict.fromkeys(row_name(c.first) for c in cases))
    formats = sorted({c.config["format"] for c in cases})
    height = 0.8 / len(formats)
    figure, axes = plt.subplots(figsize=(9, 1.5 + 0.32 * len(names) * len(formats) ** 0.5))
    for i, fmt in enumerate(formats):
        own = {row_name(c.first): c.figure("consume_throughput") for c in cases
               if c.config["format"] == fmt}
        ys = [n + i * height for n, name in enumerate(names) if name in own]
        figures = [own[name] for name in names if name in own]
        axes.barh(ys, [f.value for f in figures], height=height, label=fmt,
                  xerr=[[f.value - f.low for f in figures], [f.high - f.value for f in figures]])
    axes.set_yticks([n + 0.4 - height / 2 for n in range(len(names))], names, fontsize=8)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("messages consumed per second (log scale; bars: lowest to highest repeat)")
    axes.set_title(f"Throughput: consume rate per pair\n{_source(document)}", fontsize=10)
    axes.legend(title="format")
    axes.grid(axis="x", which="both", alpha=0.3)
    return figure


def _percentiles(case: Case) -> dict[float, float]:
    """Latency (ms) by percentile: from the merged histograms, else the summary's three."""
    histograms = [r["measurements"].get("latency_histogram") for r in case.basis]
    if histograms and all(histograms):
        merged = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        for encoded in histograms:
            merged.add(HdrHistogram.decode(encoded))
        return {p: merged.get_value_at_percentile(p) / 1000 for p in CURVE_PERCENTILES}
    return {p: value for p, key in SUMMARY_PERCENTILES.items()
            if (value := case.latency(key).value) is not None}


def _latency(document: dict):
    """HDR-style curves: latency against percentile, the tail stretched on a log axis."""
    cases = [c for c in cases_of(document["results"], "throughput")
             if is_clean(c) and c.latency("p99").value is not None]
    if not cases:
        return None
    which = "every clean case"
    if len(cases) > MAX_CURVES:  # the lowest-latency case of each broker and format
        which = "each broker's lowest p99 per format"
        best: dict[tuple[str, str], Case] = {}
        for case in cases:
            key = (case.first["pair_info"]["broker"], case.config["format"])
            if key not in best or case.latency("p99").value < best[key].latency("p99").value:
                best[key] = case
        cases = list(best.values())
    figure, axes = plt.subplots(figsize=(9, 5))
    # One colour a pair, one line style a format: a dozen curves stay apart.
    names = list(dict.fromkeys(row_name(case.first) for case in cases))
    formats = sorted({case.config["format"] for case in cases})
    for case in cases:
        points = _percentiles(case)
        axes.plot([1 / (1 - p / 100) for p in points], list(points.values()), marker="o",
                  color=plt.cm.tab10(names.index(row_name(case.first)) % 10),
                  linestyle=("-", "--", ":")[formats.index(case.config["format"]) % 3],
                  label=f"{row_name(case.first)} {case.config['format']}")
    ticks = [1 / (1 - p / 100) for p in CURVE_PERCENTILES]
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.xaxis.set_major_locator(FixedLocator(ticks))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{100 - 100 / x:g}%"))
    axes.xaxis.set_minor_locator(FixedLocator([]))
    axes.set_xlabel("percentile")
    axes.set_ylabel("end-to-end latency, ms (log scale)")
    axes.set_title(f"Latency by percentile ({which})\n{_source(document)}", fontsize=10)
    axes.legend(fontsize=7)
    axes.grid(which="both", alpha=0.3)
    return figure


def _first_runs(rows: Iterable[dict]) -> tuple[list[dict], str | None]:
    """Of `rows`, the first repeats with a per-second series in the first format, and that
    format: one panel each."""
    runs = [r for r in rows if r["measurements"].get("series") and not r["config"].get("repeat")]
    if not runs:
        return [], None
    first_format = sorted({r["config"]["format"] for r in runs})[0]
    return [r for r in runs if r["config"]["format"] == first_format], first_format


def _received(document: dict):
    """Messages received per second in each reliability trial of the first format and repeat,
    one small panel per pair and stop, the stop marked."""
    trials, first_format = _first_runs(r for r in document["results"]
                                       if r["config"]["scenario"] == "reliability")
    if not trials:
        return None
    names = list(dict.fromkeys(pair_name(r) for r in trials))
    stops = sorted({r["config"]["stop"] for r in trials})
    figure, grid = plt.subplots(len(names), len(stops), squeeze=False, sharex=True,
                                figsize=(4.5 * len(stops), 0.3 + 1.1 * len(names)))
    for r in trials:
        axes = grid[names.index(pair_name(r))][stops.index(r["config"]["stop"])]
        received = r["measurements"]["series"]["received"]
        axes.bar(range(len(received)), received, width=1.0, align="edge")
        for stop in _stop_seconds(r["measurements"].get("timeline") or []):
            axes.axvline(stop, color="red", linewidth=1.5)
        axes.set_title(f"{pair_name(r)}, {r['config']['stop']}", fontsize=8, loc="left")
        axes.tick_params(labelsize=7)
    for axes in grid[-1]:
        axes.set_xlabel("seconds from the first send")
    for row in grid:
        row[0].set_ylabel("msg/s", fontsize=7)
    figure.suptitle(f"Received per second ({first_format}; red: consumers stopped or killed)\n"
                    f"{_source(document)}", fontsize=10)
    figure.tight_layout()
    return figure


def _event_seconds(timeline: list[dict], wanted: Callable[[str], bool]) -> list[float]:
    """When the wanted events came, in seconds from the first send (the series' origin)."""
    producing = next((e["t"] for e in timeline if e["event"] == "producing"), 0.0)
    return [e["t"] - producing for e in timeline if wanted(e["event"])]


def _stop_seconds(timeline: list[dict]) -> list[float]:
    """When the consumers were stopped."""
    return _event_seconds(timeline, lambda event: event.startswith(STOP_EVENTS))


def _faults(document: dict):
    """Messages received per second through each fault (first format and repeat), one small
    panel per pair (and durability mode) and fault, the fault's time in force shaded."""
    runs, first_format = _first_runs(fault_rows(document["results"]))
    if not runs:
        return None
    names = list(dict.fromkeys(fault_row_name(r) for r in runs))
    labels = list(dict.fromkeys(r["config"]["fault"] for r in runs))
    figure, grid = plt.subplots(len(names), len(labels), squeeze=False, sharex=True,
                                figsize=(3.2 * len(labels), 0.5 + 1.1 * len(names)))
    for axes in grid.flat:  # a pair and fault that never ran stays blank
        axes.set_axis_off()
    for r in runs:
        axes = grid[names.index(fault_row_name(r))][labels.index(r["config"]["fault"])]
        axes.set_axis_on()
        received = r["measurements"]["series"]["received"]
        axes.bar(range(len(received)), received, width=1.0, align="edge")
        timeline = r["measurements"].get("timeline") or []
        healed = _event_seconds(timeline, lambda event: event.endswith(" healed"))
        injected = _event_seconds(timeline, lambda event: event.endswith(" injected"))
        for n, start in enumerate(injected):  # never healed: in force to the end
            axes.axvspan(start, healed[n] if n < len(healed) else len(received), color="red",
                         alpha=0.2, zorder=0)
        axes.set_title(f"{fault_row_name(r)}, {r['config']['fault']}", fontsize=7, loc="left")
        axes.tick_params(labelsize=7)
    for axes in grid[-1]:
        axes.set_xlabel("seconds from the first send", fontsize=7)
    for row in grid:
        row[0].set_ylabel("msg/s", fontsize=7)
    figure.suptitle(f"Received per second through each fault ({first_format}; shaded: the "
                    f"fault in force, injected to healed)\n{_source(document)}", fontsize=10)
    figure.tight_layout()
    return figure


LINE_STYLES = ("-", "--", ":", "-.")
NAMED_TICKS = 6  # an x axis with this many shared values or fewer names each of them


def _pair_lines(title: str, document: dict, xlabel: str, x: Callable[[Case], float],
                panels: tuple[tuple[str, Callable[[Case], float | None]], ...],
                lines: dict[tuple[str, str], list[Case]]):
    """Panels of lines on log-log axes, a colour per pair and a line style per kind of line
    (task, payload format), with one legend of each beside them: twenty pairs by three kinds
    in one colour cycle of ten told no line from another, and one pair's p99 of minutes hid
    every other pair's milliseconds on a linear axis."""
    pairs = list(dict.fromkeys(pair for pair, _ in lines))
    kinds = list(dict.fromkeys(kind for _, kind in lines))
    colours = plt.get_cmap("tab20")
    figure, grid = plt.subplots(1, len(panels), figsize=(6 * len(panels) + 2.5, 4.5),
                                layout="constrained")
    pairs_at: dict[float, set[str]] = {}
    for (pair, _), cases in lines.items():
        for case in cases:
            pairs_at.setdefault(x(case), set()).add(pair)
    # The values the pairs share (100, 500, 900 consumers, not one pair's 802 that memory
    # allowed) are named, rather than 10^2 and 10^3, when they are few.
    named = sorted(value for value, at in pairs_at.items() if len(at) > 1 or len(pairs) == 1)
    for axes, (label, y) in zip(grid, panels, strict=True):
        axes.set_xscale("log")
        if len(named) <= NAMED_TICKS:
            axes.set_xticks(named, [f"{value:,.0f}" for value in named])
            axes.xaxis.set_minor_locator(NullLocator())
        axes.set_yscale("log")
        axes.set_xlabel(xlabel)
        axes.set_ylabel(label)
        axes.grid(which="both", alpha=0.3)
        for (pair, kind), cases in lines.items():
            points = sorted((x(c), value) for c in cases if (value := y(c)))
            if points:
                axes.plot(*zip(*points, strict=True), marker="o", markersize=3,
                          color=colours(pairs.index(pair) % colours.N),
                          linestyle=LINE_STYLES[kinds.index(kind) % len(LINE_STYLES)])
    handles = [Line2D([], [], color=colours(n % colours.N), marker="o", label=pair)
               for n, pair in enumerate(pairs)]
    handles += [Line2D([], [], color="black", label=kind,
                       linestyle=LINE_STYLES[n % len(LINE_STYLES)]) for n, kind in enumerate(kinds)]
    figure.legend(handles=handles, loc="outside right upper", fontsize=7)
    figure.suptitle(f"{title}\n{_source(document)}", fontsize=10)
    return figure


def _scalability(document: dict):
    """Consume rate and p99 against consumers, a line per pair and task (one producer)."""
    lines: dict[tuple[str, str], list[Case]] = {}
    for case in scenario_cases(document["results"], "scalability"):
        if case.measured and case.config["producers"] == 1:
            spread = ", spread over processes" if case.config["consumers"] > 1 else ""
            lines.setdefault((pair_name(case.first), task(case) + spread), []).append(case)
    if not lines:
        return None
    return _pair_lines("Scalability: throughput and p99 against consumers", document,
                       "consumers", units,
                       (("messages consumed per s",
                         lambda c: c.figure("consume_throughput").value),
                        ("p99 latency, ms", lambda c: c.latency("p99").value)), lines)


def _payload_sizes(document: dict):
    """MB/s and p99 against bytes a message, a line per pair and payload kind."""
    lines: dict[tuple[str, str], list[Case]] = {}
    for case in scenario_cases(document["results"], "payload-sizes"):
        if case.measured:
            kind = payload_label(case).split(" ", 2)[-1]  # "raw", "json", "protobuf"
            lines.setdefault((pair_name(case.first), kind), []).append(case)
    if not lines:
        return None
    return _pair_lines("Payload size: MB/s and p99 against bytes a message", document,
                       "bytes a message", lambda c: c.figure("payload_bytes").value,
                       (("MB consumed per s", lambda c: c.figure("consume_mb_s").value),
                        ("p99 latency, ms", lambda c: c.latency("p99").value)), lines)


def _burst(document: dict):
    """Each burst's stages in time order (first repeat): the deepest backlog while a stage was
    sent (bars) and the p99 of its messages (dots). Stages last a few seconds in all, too short
    for the per-second series to show them."""
    runs = [r for r in document["results"] if r["config"].get("workload") == "burst"
            and r["measurements"].get("stages") and not r["config"].get("repeat")]
    if not runs:
        return None
    figure, backlog = plt.subplots(figsize=(9, 4))
    latency = backlog.twinx()
    width = 0.8 / len(runs)
    for i, r in enumerate(runs):
        stages = r["measurements"]["stages"]
        xs = [n + i * width for n in range(len(stages))]
        bars = backlog.bar(xs, [s["deepest_backlog"] for s in stages], width=width, alpha=0.6,
                           label=f"{pair_name(r)} deepest backlog")
        latency.plot(xs, [(s["latency_ms"] or {}).get("p99") for s in stages], marker="o",
                     linestyle="", color=bars.patches[0].get_facecolor(), alpha=1.0,
                     label=f"{pair_name(r)} p99")
    stages = runs[0]["measurements"]["stages"]
    backlog.set_xticks([n + 0.4 - width / 2 for n in range(len(stages))],
                       [f"{n + 1}: {s['messages']:,} at {s['delay_ms']:g} ms"
                        for n, s in enumerate(stages)], fontsize=8)
    backlog.set_xlabel("stage, in time order: messages at a delay between them")
    backlog.set_ylabel("deepest backlog, messages (bars)")
    latency.set_ylabel("p99 of the stage's messages, ms (dots)")
    backlog.set_title(f"Bursts: backlog and latency per stage\n{_source(document)}",
                      fontsize=10)
    backlog.legend(fontsize=7, loc="upper left")
    latency.legend(fontsize=7, loc="upper right")
    return figure
