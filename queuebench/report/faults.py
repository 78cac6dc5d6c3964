"""The faults beyond the consumer: the broker stopped or killed, the network cut or slowed, a
worker frozen. Counted as Jepsen does: a send is acknowledged, or not (failed, or no answer);
lost is acknowledged and never received; a send never acknowledged whose message arrived is
recovered; duplicates are counted and allowed.

The section leads with a matrix (pair, variant and broker durability mode by fault), says in
the declared words why a row lost or repeated messages, and ends with every run's figures.
"""

from __future__ import annotations

from collections.abc import Callable

from queuebench.report.cases import (
    NA,
    cases_of,
    ended_by,
    figure_of,
    is_complete,
    measured_by,
    num_or_na,
    pair_name,
    repeat_tag,
    repeated_cases,
    row_name,
    shown,
    table,
)
from queuebench.report.scenarios import FAIL, PASS

FAULTS_CHART = "faults.png"
SEP = " \u00b7 "
BROKER_NAMES = {"redis": "Redis", "postgres": "PostgreSQL", "rabbitmq": "RabbitMQ",
                "kafka": "Kafka", "sqs": "SQS"}


def fault_rows(results: list[dict]) -> list[dict]:
    return [r for r in results if r["config"]["scenario"] == "faults"]


def durability_mode(result: dict) -> str | None:
    """The broker durability mode the run swept, with its broker: "Redis aof-always"."""
    mode = result["config"].get("durability")
    if not mode:
        return None
    broker = result["pair_info"]["broker"]
    return f"{BROKER_NAMES.get(broker, broker)} {mode}"


def fault_row_name(result: dict, name: Callable[[dict], str] = pair_name) -> str:
    """The pair and variant (or another `name`), and the durability mode:
    "huey+redis, Redis aof-always"."""
    mode = durability_mode(result)
    return f"{name(result)}, {mode}" if mode else name(result)


def injected(result: dict) -> bool:
    """The fault came (files before the flag: assume it did)."""
    return (result["measurements"].get("fault") or {}).get("injected", True)


def is_verdict(result: dict) -> bool:
    """Measured to the end with the fault in it: the only rows a verdict stands on."""
    return is_complete(result) and injected(result)


def _most(rows: list[dict], key: str) -> int | None:
    values = [r["measurements"].get(key) for r in rows]
    return max((v for v in values if v is not None), default=None)


def _seconds(rows: list[dict], key: str) -> str:
    value = figure_of([(r["measurements"].get("fault") or {}).get(key) for r in rows]).value
    return NA if value is None else f"{value:.1f} s"


def _no_verdict(rows: list[dict]) -> str:
    """Why a cell holds no verdict, the gravest reason first."""
    statuses = {r["status"] for r in rows}
    if "error" in statuses:
        return "! error"
    if any(not is_complete(r) for r in rows if r["status"] in ("ok", "incomplete")):
        return "\u2026 incomplete"
    if statuses & {"ok", "incomplete"}:
        return "the fault never came"
    return NA


def matrix_cell(rows: list[dict]) -> str:
    """Every run of one fault on one matrix row: the most acknowledged messages lost and
    duplicated in one run, the median seconds from the heal to the first receipt and to the
    backlog back at its level before the fault."""
    verdicts = [r for r in rows if is_verdict(r)]
    if not verdicts:
        return _no_verdict(rows)
    lost, duplicates = _most(verdicts, "lost_acked"), _most(verdicts, "duplicates")
    mark = f"{FAIL} " if lost else f"{PASS} " if lost == 0 else ""
    cell = (f"{mark}{num_or_na(lost)} lost{SEP}{num_or_na(duplicates)} dup{SEP}"
            f"{_seconds(verdicts, 'first_receipt_after_heal_sec')} / "
            f"{_seconds(verdicts, 'backlog_recovered_after_sec')}")
    return cell + (f" ({len(verdicts)} of {len(rows)} runs measured)"
                   if len(verdicts) < len(rows) else "")


def _grouped(rows: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """{matrix row name: {fault label: its runs}}, in the order each first ran."""
    cells: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        cells.setdefault(fault_row_name(r), {}).setdefault(r["config"]["fault"], []).append(r)
    return cells


def declared(result: dict) -> str:
    """What the broker's durability mode and the library declare, in their own words."""
    info = result["pair_info"]
    broker = (info.get("broker_durability") or {}).get("words")
    library = (info.get("capabilities") or {}).get("durability")
    return "; ".join(filter(None, (broker and f"broker: {broker}",
                                   library and f"library: {library}")))


def why_lines(cells: dict[str, dict[str, list[dict]]]) -> list[str]:
    """One line per matrix row that lost acknowledged messages or repeated some: what happened
    in which fault, and what its settings declare; no cause is guessed."""
    lines = []
    for name, by_fault in cells.items():
        happened = []
        for label, rows in by_fault.items():
            verdicts = [r for r in rows if is_verdict(r)]
            if lost := _most(verdicts, "lost_acked"):
                happened.append(f"{label} lost {shown(lost)} acknowledged")
            if duplicates := _most(verdicts, "duplicates"):
                happened.append(f"{label} duplicated {shown(duplicates)}")
        if happened:
            words = declared(next(iter(by_fault.values()))[0])
            lines.append(f"- **{name}:** {', '.join(happened)}. "
                         + (f"Declared: {words}." if words else
                            "No declared setting explains it (see its delivery settings)."))
    return lines


LEGEND = (
    "Each cell: **lost** (acknowledged by the broker and never received: the broker's or "
    "library's loss; a send never acknowledged was refused or unanswered, the producer knew, "
    "and it is not counted as lost) \u00b7 **dup** (received more than once) \u00b7 seconds "
    "from the heal to the first message received / to the backlog back at or below its depth "
    "when the fault came (n/a: the pair has no backlog check, or it never came back). The most "
    f"lost and duplicated in one run, the median seconds. {PASS} nothing acknowledged was "
    f"lost, {FAIL} acknowledged messages were lost; a run cut short by its deadline "
    "(incomplete), failed (error), or whose fault never came holds no verdict; n/a: the fault "
    "means nothing for the pair (the reason is in the table below); \u00b7 not run. A broker "
    "stop or kill is a process crash: the page cache survives it, so what the broker wrote "
    "without fsync survives too. A power loss would not keep it; this machine cannot cut its "
    "power, so no result here covers a power loss.")


def _detail_rows(results: list[dict]) -> list[list[object]]:
    repeated = repeated_cases(results)
    rows = []
    for case in cases_of(results, "faults"):
        for r in case.results:
            m, fault = r["measurements"], r["measurements"].get("fault") or {}
            name = " ".join(filter(None, (fault_row_name(r, row_name),
                                          repeat_tag(r, repeated))))
            if r["status"] == "n/a":
                rows.append([name, r["config"].get("fault"), declared(r), *[NA] * 10,
                             m.get("not_applicable")])
                continue
            lost, lost_acked = m.get("lost"), m.get("lost_acked")
            rows.append([
                name, r["config"].get("fault"), declared(r), shown(m.get("total")),
                shown(lost_acked),
                shown(lost - lost_acked if None not in (lost, lost_acked) else None),
                shown(m.get("send_failed")), shown(m.get("recovered")),
                shown(m.get("duplicates")), shown(fault.get("first_receipt_after_heal_sec")),
                shown(fault.get("backlog_at_injection")),
                shown(fault.get("backlog_recovered_after_sec")),
                shown(fault.get("consumer_exits")),
                r["error"] if r["status"] == "error" else
                ended_by(r) if injected(r) else f"the fault never came: {ended_by(r)}"])
    return rows


def faults_section(results: list[dict], charted: bool = False) -> list[str]:
    """The section, linking the chart of received per second when it was drawn."""
    rows = fault_rows(results)
    if not rows:
        return []
    cells = _grouped(rows)
    labels = list(dict.fromkeys(r["config"]["fault"] for r in rows))
    matrix = table(["pair", *labels],
                   [[name, *(matrix_cell(by_fault[label]) if label in by_fault else "\u00b7"
                             for label in labels)] for name, by_fault in cells.items()])
    why = why_lines(cells)
    chart = ([f"Received per second through each fault, its time in force shaded: "
              f"[{FAULTS_CHART}]({FAULTS_CHART}).", ""] if charted else [])
    return ["## Faults beyond the consumer", "",
            "The fault hits once its share of the messages arrived, while the producer sends at "
            "its rate; producers and consumers reach the broker through Toxiproxy for network "
            "faults. A worker that gave up during the fault was started again a second later, "
            "as its supervisor would.", "",
            matrix, "", LEGEND, "", *chart,
            *(["Why, in the words each setting declares:", "", *why, ""] if why else []),
            "Every run: **lost, acknowledged** is what the broker or library is answerable "
            "for; of the sends never acknowledged, **recovered** arrived all the same; "
            "**workers restarted** counts the workers started again.", "",
            table(["pair", "fault", "durability declared", "messages", "lost, acknowledged",
                   "lost, never acknowledged", "sends not acknowledged", "recovered",
                   "duplicated", "recovered after s", "backlog at injection",
                   "backlog back after s", "workers restarted", "ended by"],
                  _detail_rows(results)), "", *measured_by(cases_of(rows))]
