"""The seeds' scenarios in the report, from hand-made results (no broker): each section's table,
seed 000's scaling efficiency, n/a and capped rows saying why, and the sustained answer in the
matrix."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace

import pytest

from queuebench.engine.results import ExperimentConfig
from queuebench.report import render
from queuebench.report.export import results_csv
from tests.test_report import document, matrix_rows, measurements, result


def scenario(workload: str, pair: str = "a+b", **fields) -> ExperimentConfig:
    defaults = {"messages": 10, "records": 1, "work_ms": 0.0, "deadline_sec": 60.0}
    return ExperimentConfig("throughput", pair, "default", "json", workload=workload,
                            **(defaults | fields))


def section(text: str, title: str) -> str:
    return text.split(f"## {title}")[1].split("\n## ")[0]


def table_rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    headers = [h.strip() for h in lines[0].strip("|").split("|")]
    return [dict(zip(headers, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]


def scalability(rate_by_consumers: dict[int, float], **extra) -> list[dict]:
    return [result(scenario("scalability", concurrency=n, messages=10 * n),
                   m=measurements(consume=rate, consumer_rss_mb_per_unit=2.5, **extra))
            for n, rate in rate_by_consumers.items()]


def test_scalability_table_has_the_seeds_columns_and_its_efficiency_generalised():
    """(T_most / T_fewest) / (N_most / N_fewest): 2,000 -> 3,000 msg/s from 100 to 900
    consumers is 1.5 / 9."""
    results = scalability({100: 2000.0, 500: 2500.0, 900: 3000.0})
    results[2]["measurements"]["duplicates"] = 7  # a visibility timeout ran out under load
    part = section(render(document(results)), "Scalability (seed 000)")
    rows = table_rows(part.split("Scaling efficiency")[0])
    assert [r["duplicated"] for r in rows] == ["0", "0", "7"]
    assert [(r["consumers"], r["messages"], r["msg/s"], r["RSS MB per consumer"])
            for r in rows] == [("100", "1,000", "2,000.0", "2.50"), ("500", "5,000", "2,500.0",
                                                                     "2.50"),
                               ("900", "9,000", "3,000.0", "2.50")]
    assert {"startup s", "p50 ms", "p99 ms", "lost"} <= set(rows[0])
    assert f"- a+b, no-op, 100 to 900 consumers: {1.5 / 9:.1%}" in part


def test_pss_per_consumer_stands_beside_rss_and_a_run_that_never_took_it_says_so():
    """A run taking PSS shows it; one from before queuebench took it says "not taken", never a
    "n/a" that would read as a pair for which memory means nothing."""
    results = scalability({100: 2000.0}, consumer_pss_mb_per_unit=0.8) + scalability(
        {500: 1.0, 900: 1.0})
    results[2].update(status="error", error="the consumer group did not settle")
    rows = table_rows(section(render(document(results)), "Scalability (seed 000)")
                      .split("Scaling efficiency")[0])
    assert [(r["RSS MB per consumer"], r["PSS MB per consumer"]) for r in rows] == [
        ("2.50", "0.80"), ("2.50", "not taken"), ("n/a", "n/a")]  # an error row measured none


def test_an_error_quoting_a_workers_log_stays_in_its_cell():
    """A log tail joins lines with " | " and a message may hold a line break: in a table cell
    either one broke the row into more columns than the header (seen: SQLAlchemy's SQL)."""
    results = scalability({100: 2000.0, 900: 1.0})
    results[1].update(status="error", error="exited; last log lines: locked | ... | FROM t\n"
                                            "WHERE x")
    part = section(render(document(results)), "Scalability (seed 000)")
    lines = [line for line in part.split("Scaling efficiency")[0].splitlines()
             if line.startswith("|")]
    assert len({len(re.findall(r"(?<!\\)\|", line)) for line in lines}) == 1  # as the header
    assert "last log lines: locked \\| ... \\| FROM t WHERE x" in part


def test_an_efficiency_from_a_row_cut_short_is_no_verdict():
    results = scalability({100: 2000.0, 900: 3000.0})
    results[1]["status"] = "incomplete"
    part = section(render(document(results)), "Scalability (seed 000)")
    assert "100 to 900 consumers: no verdict (1 of 1 repeats cut short)" in part


def test_the_seeds_scalability_figures_stand_beside_ours_at_the_same_consumer_count():
    part = section(render(document(scalability({100: 1234.0, 7: 99.0}))),
                   "Scalability (seed 000)").split("Beside the seed")[1]
    rows = table_rows(part)
    assert [(r["who"], r["consumers"], r["msg/s"], r["p99 ms"]) for r in rows[:2]] == [
        ("seed 000", "100", "2,142", "13.05"), ("a+b", "100", "1,234.0", "9.00")]
    assert [r["msg/s"] for r in rows[2:]] == ["906", "341"]  # our 7 consumers match no seed row


def test_a_capped_fleet_shows_what_ran_what_was_asked_and_why():
    capped = {"asked_concurrency": 900, "ran_concurrency": 40, "memory_per_unit_mb": 30.0,
              "reason": "900 units at 30.0 MB each (measured at 1 and 4) would not fit in "
                        "1,200 MB; ran 40"}
    [row] = scalability({40: 500.0}, capped=capped)
    part = section(render(document([row])), "Scalability (seed 000)")
    assert table_rows(part.split("Scaling efficiency")[0])[0]["consumers"] == "40 (asked 900)"
    assert f"- a+b: {capped['reason']}" in part


def test_consumers_spread_over_processes_say_so_beside_the_same_count_in_one():
    rows = [result(scenario("scalability", concurrency=900, messages=3000),
                   m=measurements(consume=10.0)),
            result(scenario("scalability", consumers=9, concurrency=100, messages=3000),
                   m=measurements(consume=900.0))]
    part = section(render(document(rows)), "Scalability (seed 000)")
    assert [r["consumers"] for r in table_rows(part.split("Scaling efficiency")[0])] == [
        "900", "900 (9 processes of 100)"]


def test_an_na_row_shows_its_one_line_reason():
    reason = ("a+b has no asynchronous send: its library tells nothing of a message after its "
              "send returned")
    rows = [result(scenario("producer-modes"), m=measurements(
                consume=100.0, producer_mode="sync", partitions=None)),
            result(scenario("producer-modes", producer_mode="async"), status="n/a",
                   m={"not_applicable": reason})]
    part = section(render(document(rows)), "Producer modes (seed 002)")
    assert [r["ended by"] for r in table_rows(part)] == ["complete", f"n/a: {reason}"]


def test_producer_processes_show_their_efficiency_per_step():
    rows = [result(scenario("producer-modes", producer_mode="processes", producers=n),
                   m=measurements(consume=100.0, produce_throughput=rate, partitions=None))
            for n, rate in ((1, 100.0), (2, 150.0), (4, 300.0))]
    part = section(render(document(rows)), "Producer modes (seed 002)")
    assert [r["efficiency vs the step before"] for r in table_rows(part)] == [
        "n/a", "75% (1 to 2)", "100% (2 to 4)"]


def test_payload_sizes_the_config_does_not_tell_apart_are_rows_of_their_own():
    rows = [result(scenario("payload-sizes"), m=measurements(
                consume=100.0, payload={"kind": "bytes", "bytes": size}, payload_bytes=size))
            for size in (50, 5000)]
    part = section(render(document(rows)), "Payload sizes (seed 001)")
    assert [(r["payload"], r["bytes/msg"]) for r in table_rows(part)] == [
        ("50 B raw", "50"), ("5,000 B raw", "5,000")]


def burst_result(status: str = "ok") -> dict:
    stages = [{"messages": n, "delay_ms": d, "latency_ms": {"p50": p50, "p99": 2 * p50},
               "deepest_backlog": depth}
              for n, d, p50, depth in ((50, 20.0, 5.0, 2), (300, 0.0, 80.0, 290),
                                       (50, 20.0, 6.0, 40))]
    cfg = scenario("burst", rate=((50, 20.0), (300, 0.0), (50, 20.0)))
    return result(cfg, status=status, m=measurements(
        consume=100.0, stages=stages, heaviest_stage=1, deepest_backlog=290, recovery_sec=0.4,
        drained_sec=0.3))


def test_a_burst_is_a_row_a_stage_with_recovery_on_the_heaviest():
    part = section(render(document([burst_result()])), "Bursts (seeds 000 and 001)")
    rows = table_rows(part)
    assert [(r["stage: messages at delay"], r["p99 ms"], r["deepest backlog"]) for r in rows] == [
        ("1: 50 at 20 ms", "10.00", "2"), ("2: 300 at 0 ms (heaviest)", "160.00", "290"),
        ("3: 50 at 20 ms", "12.00", "40")]
    assert (rows[1]["recovery s"], rows[1]["drained s"]) == ("0.40", "0.30")


def test_error_rate_says_what_each_library_does_and_whether_a_good_message_was_lost():
    outcome = {"in_failed_registry": 1}
    rows = [result(scenario("error-rate", fail_fraction=fraction), m=measurements(
                consume=rate, meant_to_fail=meant, failed_attempts=4 * meant,
                unexpected_failures=0, failure_outcome=outcome if meant else None))
            for fraction, rate, meant in ((0.0, 100.0, 0), (0.1, 80.0, 1))]
    for r in rows:
        r["pair_info"]["on_failure"] = "moves it to its FailedJobRegistry"
    part = section(render(document(rows)), "Failing messages (seed 001)")
    [row] = table_rows(part.split("What each library")[0])
    assert (row["good msg/s, none failing"], row["good msg/s, some failing"]) == ("100.0",
                                                                                  "80.0")
    assert (row["handler runs per failing msg"], row["where failing messages ended"],
            row["good messages lost"]) == ("4.0", "in failed registry 1", "none")
    assert "- a+b: moves it to its FailedJobRegistry" in part


def sustained_answer(pair: str, rate: float | None, failed_below: float | None = None) -> dict:
    probes = [{"rate": 50.0, "sustained": rate is not None, "why": None if rate else "p99 300 "
               "ms over 200 ms", "p99_ms": 10.0}]
    return result(replace(scenario("sustained", pair=pair), scenario="sustained"),
                  m={"sustained_rate": rate, "p99_bound_ms": 200, "probes": probes,
                     "first_failed_rate": None, "failed_below_rate": failed_below})


def test_a_sustained_answer_is_a_matrix_column_and_the_latency_pick():
    text = render(document([sustained_answer("fast+x", 900.0), sustained_answer("slow+y", None)]))
    rows = matrix_rows(text.split("## The answer")[1].split("\n## ")[0])
    column = "sustains msg/s at p99 <= 200 ms"
    assert (rows["fast+x"][column], rows["slow+y"][column]) == ("900 \u2605", "\u2717 < 50")
    assert "**Latency matters most:** fast+x: sustains 900 msg/s with p99 within 200 ms" in text
    probes = table_rows(section(text, "Sustained rate (seed 001)"))
    assert probes[1]["probes in order: msg/s, passed or why not"] == (
        "50 \u2717 (p99 300 ms over 200 ms)")


def test_a_sustained_rate_that_failed_at_a_lower_rate_says_so():
    """A batch window fails low rates only: the headline and the table name the rate below."""
    text = render(document([sustained_answer("batch+x", 740.0, failed_below=54.0)]))
    assert ("sustains 740 msg/s with p99 within 200 ms and no growing backlog (highest rate "
            "found in 1 probes; it failed at a lower rate, 54 msg/s)") in text
    row = table_rows(section(text, "Sustained rate (seed 001)"))[0]
    assert row["sustains msg/s"] == "740 (but failed at 54)"


@pytest.mark.parametrize(("statuses", "cell"), [
    (("ok", "ok"), "\u2717 1 of 2 10.00 (10.00\u201310.00) < 5"),
    (("incomplete",), "10.00 (no verdict)")])
def test_targets_pass_only_on_every_complete_repeat(statuses, cell):
    rows = []
    for repeat, status in enumerate(statuses):
        m = measurements(consume=50.0, target_bounds_ms={"p50": 5, "p95": 100, "p99": 200},
                         targets={"p50": repeat == 0, "p95": True, "p99": True})
        m["latency_ms"]["p50"] = 10.0
        rows.append(result(scenario("sustained", rate=50.0, repeat=repeat), status=status, m=m))
    part = section(render(document(rows)), "Sustained rate (seed 001)")
    assert table_rows(part)[0]["p50 ms"] == cell


def test_scenario_rows_stay_out_of_the_throughput_table_and_csv_stays_flat():
    rows = [burst_result(), *scalability({1: 10.0})]
    rows.append(result(ExperimentConfig("throughput", "a+b", "default", "json", 10, 1, 0.0,
                                        60.0), m=measurements(consume=100.0)))
    text = render(document(rows))
    assert len(table_rows(section(text, "Throughput"))) == 1
    csv_rows = list(csv.DictReader(io.StringIO(results_csv(document(rows)))))
    assert len(csv_rows) == 3 and "stages" not in csv_rows[0]
    assert csv_rows[0]["workload"] == "burst"


def test_a_run_of_scenarios_only_points_to_their_sections_instead_of_an_empty_matrix():
    answer = render(document([burst_result()])).split("## The answer")[1].split("\n## ")[0]
    assert "only the seeds' scenarios" in answer and "|" not in answer


def test_a_nested_figure_never_overwrites_a_measurement_of_the_same_column_name():
    """`payload` {"bytes": 50} would flatten to `payload_bytes`, the bytes a message measured."""
    row = result(scenario("payload-sizes"), m=measurements(
        consume=1.0, payload={"kind": "bytes", "bytes": 50}, payload_bytes=52))
    [flat] = csv.DictReader(io.StringIO(results_csv(document([row]))))
    assert (flat["payload_kind"], flat["payload_bytes"]) == ("bytes", "52")


def test_a_merged_reports_sections_say_which_run_measured_their_rows():
    """A merged report's rows come from runs of different days, machines and loads: each
    section names them (start, run, commit, the machine when its manifest said, pairs); rows
    merged before results kept their run are counted apart; a single run's report says
    nothing of the kind."""
    def burst(pair: str, part: dict | None) -> dict:
        return {**result(scenario("burst", pair), m=measurements(consume=5.0)), "part": part}

    def part(run: str, started_at: str, commit: str | None = "2ad65fc") -> dict:
        return {"run": run, "started_at": started_at, "commit": commit}

    idle = part("scenarios-idle", "2026-12-03T05:54:10+00:00")
    slower = {**part("scenarios-again", "2026-12-03T05:54:50+00:00"), "os": "Linux-6.18-b",
              "json_round_trips_per_sec": 99604, "fsync_4k_ms": 0.251}
    merged = document([burst("a+redis", idle), burst("b+redis", idle), burst("e+redis", slower),
                       burst("c+kafka", part("scenarios", "2026-12-01T18:34:00+00:00", None)),
                       burst("d+sqs", None)])
    text = section(render(merged), "Bursts (seeds 000 and 001)")
    assert text.split("Measured by:")[1].strip().splitlines() == [
        "- 1 case: runs merged before each result kept its run (the command above lists them "
        "all)",
        "- 2026-12-01 18:34 UTC, `scenarios` at ?: c+kafka",
        "- 2026-12-03 05:54 UTC, `scenarios-idle` at 2ad65fc: a+redis, b+redis",
        "- 2026-12-03 05:54 UTC, `scenarios-again` at 2ad65fc (Linux-6.18-b, 99,604 JSON round "
        "trips/s, fsync 0.251 ms): e+redis"]  # in order of start
    rows = list(csv.DictReader(io.StringIO(results_csv(merged))))
    assert [(r["pair"], r["part_run"], r["part_commit"]) for r in rows] == [
        ("a+redis", "scenarios-idle", "2ad65fc"), ("b+redis", "scenarios-idle", "2ad65fc"),
        ("e+redis", "scenarios-again", "2ad65fc"), ("c+kafka", "scenarios", ""), ("d+sqs", "", "")]
    single = render(document([result(scenario("burst"), m=measurements(consume=5.0))]))
    assert "Measured by" not in single
