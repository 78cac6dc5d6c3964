"""`queuebench compare RUN_A RUN_B`: what changed between two runs, and whether it is beyond
the noise (after pyperf's compare_to).

Cases are matched by their config (its repeat and deadline aside). A change is called only when
both runs repeated the case and the spreads of their repeats (lowest to highest) do not overlap;
overlapping spreads are "within the noise", and a case run once on either side "cannot tell".
"""

from __future__ import annotations

import json

from queuebench.report.cases import Case, Figure, cases_of, row_name, shown, table

# (label, key in the measurements, higher is better); latency percentiles come from latency_ms.
FIGURES = {
    "throughput": (("consume msg/s", "consume_throughput", True),
                   ("produce msg/s", "produce_throughput", True),
                   ("p50 ms", "p50", False), ("p99 ms", "p99", False)),
    "reliability": (("lost", "lost", False), ("duplicated", "duplicates", False),
                    ("consume s", "time_to_consume_sec", False)),
}
LATENCY_KEYS = {"p50", "p99"}
BEYOND, WITHIN, CANNOT_TELL = "beyond the noise", "within the noise", "cannot tell (1 repeat)"


def _match_key(case: Case) -> str:
    return json.dumps({k: v for k, v in case.config.items() if k not in ("repeat", "deadline_sec")},
                      sort_keys=True)


def _figure(case: Case, key: str) -> Figure:
    return case.latency(key) if key in LATENCY_KEYS else case.figure(key)


def significance(before: Figure, after: Figure) -> str:
    if before.count < 2 or after.count < 2:
        return CANNOT_TELL
    overlap = before.low <= after.high and after.low <= before.high
    return WITHIN if overlap else BEYOND


def change(before: float, after: float, higher_is_better: bool) -> str:
    """"2.00x faster" in pyperf's words, or the difference where a ratio means nothing."""
    if before == after:
        return "same"
    if not before or not after:
        return f"{after - before:+,g}"
    ratio = after / before if higher_is_better else before / after
    return f"{ratio:.2f}x better" if ratio > 1 else f"{1 / ratio:.2f}x worse"


def compare(old: dict, new: dict) -> str:
    """Markdown: every figure of every case the two runs share, and the cases only one ran."""
    before = {_match_key(case): case for case in cases_of(old["results"]) if case.basis}
    after = {_match_key(case): case for case in cases_of(new["results"]) if case.basis}
    rows = []
    for key, case in after.items():
        if key not in before:
            continue
        name = f"{case.config['scenario']} {row_name(case.first)} {case.config['format']}" + (
            f" {case.config['stop']}" if case.config.get("stop") else "")
        for label, measure, higher_is_better in FIGURES.get(case.config["scenario"], ()):
            a, b = _figure(before[key], measure), _figure(case, measure)
            if a.value is None or b.value is None:
                continue
            rows.append([name, label, _cell(a), _cell(b),
                         change(a.value, b.value, higher_is_better), significance(a, b)])
    out = [f"# queuebench compare: {old['run']['name']} -> {new['run']['name']}", "",
           f"A: {old['run']['name']}, started {old['run']['started_at']}; "
           f"B: {new['run']['name']}, started {new['run']['started_at']}. Each figure is the "
           "median of a case's repeats (lowest-highest); a change is beyond the noise only when "
           "both ran at least twice and their spreads do not overlap.", ""]
    out.append(table(["case", "figure", "A", "B", "change", "verdict"], rows) if rows
               else "The two runs share no case.")
    for label, only in (("only in A", before.keys() - after.keys()),
                        ("only in B", after.keys() - before.keys())):
        if only:
            cases = before if label == "only in A" else after
            names = sorted(f"{cases[k].config['scenario']} {row_name(cases[k].first)} "
                           f"{cases[k].config['format']}" for k in only)
            out += ["", f"Cases {label}: " + "; ".join(dict.fromkeys(names)) + "."]
    return "\n".join(out) + "\n"


def _cell(figure: Figure) -> object:
    return figure.cell(1) if figure.count > 1 else shown(figure.value)
