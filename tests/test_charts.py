"""Charts drawn from results.json into the run folder and linked from report.md."""

from __future__ import annotations

import pytest

from queuebench.report import write_report
from tests.test_report import config, document, measurements, repeats, result, timed

pytest.importorskip("matplotlib", reason="the charts extra: pip install 'queuebench[charts]'")


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
