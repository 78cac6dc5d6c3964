"""The fault matrix: pair, variant and broker durability mode by fault, why a row lost or
repeated messages in its declared words, the answer's fault columns, and the chart."""

from __future__ import annotations

from dataclasses import replace

import pytest

from queuebench.report import render, write_report
from tests.test_report import (
    answer_section,
    config,
    document,
    matrix_rows,
    measurements,
    result,
)

REDIS_NONE = "Redis without persistence: a broker crash or restart loses every message still queued"
LIBRARY = "durable queue, persistent messages (delivery_mode 2)"


def fault_run(pair: str, label: str, status: str = "ok", *, lost_acked: int = 0,
              duplicates: int = 0, durability: str | None = None, words: str | None = None,
              library: str | None = None, **extra) -> dict:
    """A fault run of 10 messages whose fault was healed 0.6 s before the next receipt and 3.1 s
    before the backlog was back; `words` and `library` the declared durability (absent: an
    older run)."""
    m = measurements(lost=lost_acked, lost_acked=lost_acked, duplicates=duplicates,
                     send_failed=0, recovered=0,
                     fault={"fault": label.split()[0], "injected": True,
                            "first_receipt_after_heal_sec": 0.6, "consumer_exits": 0,
                            "backlog_at_injection": 4, "backlog_recovered_after_sec": 3.1},
                     **extra)
    run = result(replace(config("faults", pair), fault=label, workload="broker-restart"),
                 status, m)
    run["config"]["durability"] = durability
    run["pair_info"]["broker"] = pair.split("+")[1]
    if words:
        run["pair_info"]["broker_durability"] = {"mode": durability, "settings": {},
                                                 "words": words}
    if library:
        run["pair_info"]["capabilities"]["durability"] = library
    return run


def table_after(text: str, marker: str) -> list[dict[str, str]]:
    """The rows of the first table after `marker`, as {header: cell} with cells stripped."""
    after = text.split(marker, 1)[1]
    lines = after[after.index("\n|") + 1:].split("\n\n")[0].splitlines()
    headers = [h.strip() for h in lines[0].strip("|").split("|")]
    return [dict(zip(headers, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]


def fault_matrix(results: list[dict]) -> dict[str, dict[str, str]]:
    return {row["pair"]: row for row in table_after(render(document(results)),
                                                    "## Faults beyond the consumer")}


def test_a_matrix_cell_gives_lost_duplicated_and_recovery_or_why_it_holds_no_verdict():
    """Lost counts acknowledged messages only; a run cut short and an n/a row draw no verdict."""
    rows = fault_matrix([
        fault_run("rq+redis", "broker-kill 5s", lost_acked=3),
        fault_run("rq+redis", "network-cut 10s", duplicates=2),
        fault_run("kombu+redis", "broker-kill 5s", "incomplete", outcome="deadline"),
        result(replace(config("faults", "huey+sqlite"), fault="broker-kill 5s"), "n/a",
               {"not_applicable": "no broker process"}),
    ])
    assert rows["rq+redis"] == {
        "pair": "rq+redis", "broker-kill 5s": "\u2717 3 lost \u00b7 0 dup \u00b7 0.6 s / 3.1 s",
        "network-cut 10s": "\u2713 0 lost \u00b7 2 dup \u00b7 0.6 s / 3.1 s"}
    assert rows["kombu+redis"]["broker-kill 5s"] == "\u2026 incomplete"
    assert rows["kombu+redis"]["network-cut 10s"] == "\u00b7"  # not run
    assert rows["huey+sqlite"]["broker-kill 5s"] == "n/a"


def test_each_durability_mode_is_a_row_of_its_own_named_by_its_broker():
    """Two modes of one pair stay apart, each named with its broker's name for the mode."""
    rows = fault_matrix([
        fault_run("huey+redis", "broker-kill 5s", lost_acked=7, durability="none"),
        fault_run("huey+redis", "broker-kill 5s", durability="aof-always"),
    ])
    assert [(name, row["broker-kill 5s"][0]) for name, row in rows.items()] == [
        ("huey+redis, Redis none", "\u2717"), ("huey+redis, Redis aof-always", "\u2713")]


def test_the_why_line_quotes_what_broker_and_library_declare():
    """Only a row that lost or repeated messages gets a line, in the declared words; the
    detailed table states them beside every run, and shows the backlog figures."""
    text = render(document([
        fault_run("celery+redis", "broker-kill 5s", lost_acked=250, durability="none",
                  words=REDIS_NONE, library=LIBRARY),
        fault_run("celery+redis", "broker-kill 5s", durability="aof-always",
                  words="Redis AOF, fsync always", library=LIBRARY),
        fault_run("rq+redis", "network-cut 10s", duplicates=1),
    ]))
    why = [line for line in text.split("Why, in the words")[1].split("\n\n")[1].splitlines()]
    assert why == [
        f"- **celery+redis, Redis none:** broker-kill 5s lost 250 acknowledged. Declared: "
        f"broker: {REDIS_NONE}; library: {LIBRARY}.",
        "- **rq+redis:** network-cut 10s duplicated 1. No declared setting explains it (see its "
        "delivery settings)."]
    detail = table_after(text, "Every run:")[0]
    assert detail["durability declared"] == f"broker: {REDIS_NONE}; library: {LIBRARY}"
    assert (detail["backlog at injection"], detail["backlog back after s"]) == ("4", "3.10")


def test_the_answer_has_fault_columns_only_when_the_run_has_fault_rows():
    """Broker crash, network cut and the longest frozen worker, marked by acknowledged losses,
    per durability mode; a run without fault rows has none of these columns, and a run of
    faults only no empty "Best for"."""
    throughput = result(config("throughput", "rq+redis"), m=measurements(consume=100.0))
    assert "broker crash" not in answer_section([throughput])
    faults_only = answer_section([fault_run("rq+redis", "broker-kill 5s")])
    assert "broker crash" in faults_only and "Best for:" not in faults_only  # nothing to pick
    rows = matrix_rows(answer_section([
        throughput,
        fault_run("rq+redis", "broker-kill 5s", lost_acked=4, durability="none"),
        fault_run("rq+redis", "broker-kill 5s", durability="aof-everysec"),
        fault_run("rq+redis", "network-cut 10s", duplicates=2),
        fault_run("rq+redis", "consumer-pause 5s"),
        fault_run("rq+redis", "consumer-pause 45s", lost_acked=1),
        fault_run("rq+redis", "network-latency 10s", lost_acked=9),  # no column of its own
    ]))
    assert {k: v for k, v in rows["rq+redis"].items() if k != "msg/s json"} == {
        "pair": "rq+redis", "broker crash": "none: \u2717 loses 4; aof-everysec: \u2713 none",
        "network cut": "\u2248 2 dup", "frozen worker": "\u2717 loses 1"}


def test_the_faults_chart_is_drawn_and_linked_from_the_faults_section(tmp_path):
    """Received per second through each fault, linked where the faults are read."""
    pytest.importorskip("matplotlib", reason="the charts extra: pip install 'queuebench[charts]'")
    run = fault_run("rq+redis", "broker-kill 5s",
                    series={"sent": [5, 5, 5, 5], "received": [5, 0, 0, 15],
                            "backlog": [0, 5, 10, 0]},
                    timeline=[{"t": 0.5, "event": "producing"},
                              {"t": 1.5, "event": "broker-kill injected"},
                              {"t": 3.5, "event": "broker-kill healed"}])
    text = write_report(tmp_path, document([run]))
    assert "[faults.png](faults.png)" in text.split("## Faults beyond the consumer")[1]
    assert (tmp_path / "faults.png").read_bytes().startswith(b"\x89PNG")


def test_every_run_separates_what_was_acknowledged_from_what_never_was():
    """Below the matrix, every run: of 10 messages 4 lost, 1 acknowledged (the broker's loss)
    and 3 never; of 5 sends never acknowledged, 2 arrived all the same (recovered); an n/a row
    gives its reason. (Replaces test_report.py's test of the table before the matrix.)"""
    lossy = fault_run("rq+redis", "broker-kill 5s", lost_acked=1)
    lossy["measurements"].update(lost=4, send_failed=5, recovered=2)
    lossy["measurements"]["fault"]["consumer_exits"] = 1
    embedded = result(replace(config("faults", "huey+sqlite"), fault="broker-kill 5s"), "n/a",
                      {"not_applicable": "no broker process"})
    rows = table_after(render(document([lossy, embedded])), "Every run:")
    assert [(r["lost, acknowledged"], r["lost, never acknowledged"], r["recovered"],
             r["workers restarted"]) for r in rows[:1]] == [("1", "3", "2", "1")]
    assert rows[1]["ended by"] == "no broker process"


def test_a_run_of_faults_only_finds_what_its_faults_did():
    """Findings of a run with fault rows only count the runs that lost acknowledged messages
    and the ones that repeated some, instead of claiming nothing finished."""
    text = render(document([fault_run("rq+redis", "broker-kill 5s", lost_acked=3),
                            fault_run("rq+redis", "network-cut 10s", duplicates=2),
                            fault_run("huey+redis", "network-cut 10s")]))
    findings = text.split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert "No experiment finished" not in findings
    assert ("- **Faults beyond the consumer:** 1 of 3 runs measured to the end lost "
            "acknowledged messages, 1 delivered some twice") in findings


def test_a_pairs_section_states_what_its_library_and_each_broker_mode_declare():
    """Beside the settings, what the library declares about durability and, once each, the
    broker durability modes its rows ran in."""
    runs = [fault_run("rq+redis", label, durability=mode, words=f"Redis {mode} words",
                      library="nothing: the broker decides")
            for label in ("broker-stop 5s", "broker-kill 5s") for mode in ("none", "aof-always")]
    text = render(document(runs))
    section = text.split("### rq+redis", 1)[1].split("\n\n", 2)[1]
    assert "- **durability, as the library declares it:** nothing: the broker decides" in section
    assert [line for line in section.splitlines() if "broker's durability" in line] == [
        "- **the broker's durability:** Redis none words",
        "- **the broker's durability:** Redis aof-always words"]


def test_a_merged_faults_section_says_which_run_measured_each_pair():
    """FAULTS.md merges one run per broker group, hours and commits apart: the section names
    them as the scenarios' sections do."""
    redis = fault_run("rq+redis", "broker-kill 5s")
    redis["part"] = {"run": "faults-redis", "started_at": "2026-12-02T10:00:00+00:00",
                     "commit": "c1"}
    kafka = fault_run("confluent-kafka+kafka", "broker-kill 5s")
    kafka["part"] = {"run": "faults-kafka", "started_at": "2026-12-02T11:30:00+00:00",
                     "commit": "c2"}
    section = render(document([redis, kafka])).split("## Faults beyond the consumer")[1]
    assert section.split("Measured by:")[1].split("\n\n")[1].splitlines() == [
        "- 2026-12-02 10:00 UTC, `faults-redis` at c1: rq+redis",
        "- 2026-12-02 11:30 UTC, `faults-kafka` at c2: confluent-kafka+kafka"]
