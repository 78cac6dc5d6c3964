"""Charts drawn from results.json into the run folder and linked from report.md."""

from __future__ import annotations

import pytest

from queuebench.report import write_report
from tests.test_report import config, document, measurements, repeats, result, timed
from tests.test_report_scenarios import scenario

pytest.importorskip("matplotlib", reason="the charts extra: pip install 'queuebench[charts]'")

from queuebench.report.charts import _scalability  # after the skip: it imports matplotlib


def test_each_chart_is_a_png_in_the_run_folder_linked_from_the_report(tmp_path):
    """Throughput, latency curves from histograms, and received per second with the stop."""
    trial = measurements(series={"sent": [10, 0, 0], "received": [0, 6, 4],
                                 "backlog": [10, 4, 0]},
                         timeline=[{"t": 0.5, "event": "producing"},
                                   {"t": 1.7, "event": "consumers killed after 5 received"}])
    text = write_report(tmp_path, document([
        *repeats(config("throughput", "quick"),
                 *(timed([ms] * 50, consume=900.0 + ms) for ms in (1, 2, 3))),
        result(config("throughput", "slow"), m=measurements(consume=40.0)),
        result(config("reliability", "quick", "kill"), m=trial),
    ]))
    charts = text.split("## Charts")[1].split("\n## ")[0]
    for name in ("throughput.png", "latency.png", "received.png"):
        assert f"]({name})" in charts
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_a_run_without_figures_to_chart_draws_nothing(tmp_path):
    """Only errors: no empty chart is drawn, and the report says so."""
    text = write_report(tmp_path, document([
        result(config("throughput", "broken"), status="error", error="died")]))
    assert "No figure to chart." in text
    assert not list(tmp_path.glob("*.png"))


def test_a_scenario_chart_gives_each_pair_a_colour_and_each_task_a_line_style():
    """Twenty pairs by two tasks in one colour cycle of ten told no line from another; and
    p99s from milliseconds to minutes need a log axis to be read at all."""
    results = [result(scenario("scalability", pair, concurrency=n, work_ms=work),
                      m=measurements(consume=100.0 * n))
               for pair in ("a+b", "c+d") for work in (0.0, 100.0) for n in (100, 900)]
    spread = [result(scenario("scalability", "a+b", consumers=processes, concurrency=100),
                     m=measurements(consume=500.0)) for processes in (5, 9)]
    figure = _scalability(document(results + spread))
    throughput, p99 = figure.axes
    lines = {(line.get_color(), line.get_linestyle()) for line in throughput.get_lines()}
    assert len(lines) == 5  # two colours by two tasks, and a+b's group over processes
    assert len({colour for colour, _ in lines}) == 2
    assert len({style for _, style in lines}) == 3
    assert p99.get_yscale() == "log"
    # the counts both pairs ran are named; a+b's 500 alone is not
    assert [tick.get_text() for tick in throughput.get_xticklabels()] == ["100", "900"]
