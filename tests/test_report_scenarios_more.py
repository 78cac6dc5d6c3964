"""The scenario sections, continued (issue 10): n/a rows of one pair and one reason collapsed into
one row, and the line saying what saturated when sleeping tasks do not scale with consumers."""

from __future__ import annotations

from queuebench.report import render
from queuebench.report.scenarios import scenario_sections
from queuebench.worker.envelope import HEADER
from tests.test_report import document, measurements, result
from tests.test_report_scenarios import scenario, section, table_rows

NO_ASYNC = ("a+b has no asynchronous send: its library tells nothing of a message after its send "
            "returned")
NO_PARTITIONS = "a+b has no partitions for queuebench to set"


def producer_modes(with_na: bool = True) -> list[dict]:
    """Seed 002's sweep on a pair with neither an async send nor partitions, as a run records
    it: for each step the case itself, then partitions 4 and 8 (n/a, one config: the pair has
    no partitions to record)."""
    steps = [{"producer_mode": "sync"},
             *({"producer_mode": "async", "in_flight": n} for n in (1, 16, 256)),
             *({"producer_mode": "processes", "producers": n} for n in (1, 2, 4))]
    rows = []
    for step in steps:
        cfg = scenario("producer-modes", **step)
        if step["producer_mode"] == "async":
            if with_na:
                rows.append(result(cfg, status="n/a", m={"not_applicable": NO_ASYNC}))
        else:
            rows.append(result(cfg, m=measurements(
                consume=100.0, produce_throughput=100.0 * step.get("producers", 1),
                partitions=None)))
        if with_na:
            rows += [result(cfg, status="n/a", m={"not_applicable": NO_PARTITIONS})] * 2
    return rows


def producer_rows(results: list[dict]) -> list[dict[str, str]]:
    return table_rows(section(render(document(results)), "Producer modes (seed 002)"))


def test_na_rows_of_one_pair_and_reason_become_one_row_naming_what_they_cover():
    """Ten n/a rows, two reasons: two rows, each in the place of its first, the sweep values
    they cover in their columns and the reason once."""
    na = [(r["mode"], r["in flight"], r["producer processes"], r["ended by"])
          for r in producer_rows(producer_modes()) if r["ended by"].startswith("n/a")]
    assert na == [("sync/async/processes", "1/16/256", "1/2/4", f"n/a: {NO_PARTITIONS}"),
                  ("async", "1/16/256", "1", f"n/a: {NO_ASYNC}")]


def test_measured_rows_stay_as_they_are_where_they_were():
    """The sync row first, the two n/a rows after it, then the processes rows: each as the
    table shows it without any n/a row."""
    rows = producer_rows(producer_modes())
    measured = producer_rows(producer_modes(with_na=False))
    assert [rows[0], *rows[3:]] == measured
    assert [r["efficiency vs the step before"] for r in measured] == [
        "n/a", "n/a", "100% (1 to 2)", "100% (2 to 4)"]


def sleeping_sweep(rates: dict[int, float], *, busy: float = 45.0, **extra) -> list[dict]:
    """Scalability with a 100 ms sleeping task; `extra` goes to the most consumers' row."""
    most = max(rates)
    rows = [result(scenario("scalability", concurrency=n, messages=10 * n, work_ms=100.0),
                   m=measurements(consume=rate,
                                  host={"cpu_busy_pct": busy, "harness_cpu_pct": 3.0},
                                  **(extra if n == most else {})))
            for n, rate in rates.items()]
    for r in rows:
        r["pair_info"]["variant_note"] = "one shared connection"
    return rows


def ceiling(consume_msg_s: float) -> dict:
    return {"broker": "b", "tool": "b-perf", "label": "", "size_bytes": 100 + HEADER.size,
            "messages": 1000, "produce_msg_s": consume_msg_s, "produce_mb_s": 1.0,
            "consume_msg_s": consume_msg_s, "consume_mb_s": 1.0, "seconds": 1.0,
            "measured_at": "2026-12-01T00:00:00Z"}


def saturated(results: list[dict], ceilings: list[dict] = ()) -> list[str]:
    text = "\n".join(scenario_sections(results, ceilings))
    assert "- a+b, sleeps 100 ms, 100 to 500" in text  # the sweep has its efficiency
    return [line for line in text.splitlines() if line.startswith("- a+b, sleeps 100 ms, 500")]


def test_a_sweep_on_a_busy_cpu_says_the_cpu_saturated():
    """1,000 -> 1,200 msg/s from 100 to 500 consumers is 24% of linear, the machine 97% busy."""
    assert saturated(sleeping_sweep({100: 1000.0, 500: 1200.0}, busy=97.0)) == [
        "- a+b, sleeps 100 ms, 500 consumers: machine CPU 97.0% busy (the harness 3.0%), no "
        "ceiling of b measured near its message size: the CPU"]


def test_a_sweep_clear_of_the_cpu_and_the_broker_points_at_the_library():
    assert saturated(sleeping_sweep({100: 1000.0, 500: 1200.0}), [ceiling(10_000.0)]) == [
        "- a+b, sleeps 100 ms, 500 consumers: machine CPU 45.0% busy (the harness 3.0%), "
        "1,200.0 msg/s, 12% of b's own ceiling of 10,000 msg/s: neither the CPU nor the "
        "broker's own limit; a lock or a connection in the library (its consumers: one shared "
        "connection)"]


def test_a_sweep_at_its_brokers_ceiling_says_the_broker_saturated():
    [line] = saturated(sleeping_sweep({100: 1000.0, 500: 1200.0}), [ceiling(1_300.0)])
    assert line.endswith("1,200.0 msg/s, 92% of b's own ceiling of 1,300 msg/s: the broker")


def test_a_fleet_capped_by_memory_says_so():
    capped = {"asked_concurrency": 900, "ran_concurrency": 500, "memory_per_unit_mb": 3.0,
              "reason": "900 units at 3.0 MB each would not fit in 1,800 MB; ran 500"}
    [line] = saturated(sleeping_sweep({100: 1000.0, 500: 900.0}, capped=capped))
    assert line.startswith("- a+b, sleeps 100 ms, 500 (asked 900) consumers: ")
    assert line.endswith("fleet capped by memory (asked 900): memory")


def test_a_sweep_that_scales_gets_no_saturation_line_and_the_rule_only_with_one():
    """4,000 msg/s at 500 consumers from 1,000 at 100 is 80% of linear."""
    scaling = sleeping_sweep({100: 1000.0, 500: 4000.0}, busy=97.0)
    assert saturated(scaling) == []
    assert "What saturated" not in "\n".join(scenario_sections(scaling))
    flat = sleeping_sweep({100: 1000.0, 500: 1000.0})
    assert "grew by less than 50% of linear" in "\n".join(scenario_sections(flat))
