"""Each scenario of experiments/ on one embedded pair (a SQL queue table on SQLite) at a small
size through `--set`: the shape of its figures and one behaviour that could fail. Whole file:
a few minutes on two cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from queuebench import adapters
from queuebench.engine.workload import cells, load

RUN_TIMEOUT_SEC = 240


def run_scenario(tmp_path: Path, name: str, *settings: str) -> list[dict]:
    """`queuebench run NAME` over sqlalchemy+sqlite in `tmp_path`; its results."""
    pair = f"sqlalchemy+sqlite:///{tmp_path / 'queue.sqlite'}"
    argv = [sys.executable, "-m", "queuebench", "run", name, "--pair", pair,
            "--reports-dir", str(tmp_path / "reports"), "--name", name]
    for setting in settings:
        argv += ["--set", setting]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_SEC)
    assert "Traceback" not in proc.stderr, proc.stderr
    [results] = (tmp_path / "reports").glob(f"*-{name}/results.json")
    return json.loads(results.read_text())["results"]


def test_burst_stages_each_have_latency_and_the_heavy_stage_the_deepest_backlog(tmp_path):
    """Three stages, the middle one 60 messages at once: each stage has its latency, the
    at-once stage holds the deepest backlog, and the backlog drains after it (whether latency
    is back to normal before the run ends depends on a busy machine: not asserted). The last
    stage sends 10 a second, which even a loaded machine drains faster than it comes."""
    [result] = run_scenario(tmp_path, "burst", "rate={stages: [[20, 20], [60, 0], [20, 100]]}",
                            "repeats=1", "payload.records=5")
    m = result["measurements"]
    assert result["status"] == "ok" and m["lost"] == 0
    assert [s["messages"] for s in m["stages"]] == [20, 60, 20]
    assert all(s["latency_ms"]["p99"] > 0 for s in m["stages"])
    assert m["heaviest_stage"] == 1
    depths = [s["deepest_backlog"] for s in m["stages"]]
    assert depths[1] == max(depths) == m["deepest_backlog"] > depths[0]
    assert m["drained_sec"] is not None and m["drained_sec"] > 0
    assert "recovery_sec" in m


def test_payload_sizes_carry_raw_bytes_of_each_size_beside_stock_batches(tmp_path):
    """Raw bodies arrive at their size (no records, format "raw"), beside record batches."""
    results = run_scenario(tmp_path, "payload-sizes", "messages=30", "repeats=1",
                           "cases=[{payload: {bytes: [50, 5000]}}, "
                           "{payload: {records: 10, format: [json, protobuf]}}]")
    shapes = [(r["config"]["format"], r["measurements"]["payload"]) for r in results]
    assert shapes == [("raw", {"kind": "bytes", "bytes": 50}),
                      ("raw", {"kind": "bytes", "bytes": 5000}),
                      ("json", {"kind": "records", "format": "json", "records": 10}),
                      ("protobuf", {"kind": "records", "format": "protobuf", "records": 10})]
    for r in results:
        assert r["status"] == "ok" and r["measurements"]["successful"] == 30
        assert r["measurements"]["consume_mb_s"] > 0
    assert [r["measurements"]["payload_bytes"] for r in results[:2]] == [50, 5000]


def test_a_mix_gives_each_kind_its_share_and_its_own_latency(tmp_path):
    """60/30/10 of 50 messages by sequence number: 30, 15 and 5, each kind's latency measured,
    and the 200-record kind's messages larger than the single ticks."""
    [result] = run_scenario(tmp_path, "mixed", "messages=50", "repeats=1",
                            "payload.format=json",
                            "payload.mix=[{records: 1, weight: 60}, {records: 20, weight: 30}, "
                            "{records: 200, weight: 10}]")
    kinds = result["measurements"]["kinds"]
    assert [(k["records"], k["messages"], k["received"]) for k in kinds] == [
        (1, 30, 30), (20, 15, 15), (200, 5, 5)]
    assert all(k["latency_ms"]["p50"] > 0 for k in kinds)
    assert kinds[0]["payload_bytes"] < kinds[1]["payload_bytes"] < kinds[2]["payload_bytes"]


def test_the_error_rate_run_receives_every_good_message(tmp_path):
    """With a tenth of the handlers raising, every other message is received; the failing
    ones are counted as the handler's, not as lost."""
    results = run_scenario(tmp_path, "error-rate", "messages=40", "repeats=1",
                           "payload.records=5")
    clean, failing = (r["measurements"] for r in results)
    assert (clean["meant_to_fail"], clean["successful"]) == (0, 40)
    assert failing["meant_to_fail"] == 4 and failing["successful"] == 36
    assert failing["unexpected_failures"] == 0 and failing["lost"] == 0


def test_sustained_search_finds_a_rate_and_judges_targets_by_the_rows_percentiles(tmp_path):
    """A search from 20 msg/s over three rates answers with the highest rate that passed, with
    the probes that decided it; at a fixed rate each of the seed's targets is judged from that
    row's own percentile (pass or fail is the machine's: a loaded one may fail them)."""
    results = run_scenario(tmp_path, "sustained", "messages=40",
                           "cases=[{rate: {search: {start: 20, step: 2, probes: 3, "
                           "probe_sec: 1}}}, "
                           "{rate: 20, targets: {p50_ms: 50, p95_ms: 100, p99_ms: 200}}]")
    probes = [r for r in results if "sustained_probe" in r["measurements"]]
    [answer] = [r for r in results if r["config"]["scenario"] == "sustained"]
    rates = list(dict.fromkeys(p["config"]["rate"] for p in probes))  # a rate may be retried
    assert len(rates) == 3 and rates[:2] == [20, 40]
    assert all(p["config"]["messages"] == p["config"]["rate"] for p in probes
               if p["config"]["rate"] in (20, 40))  # a second each
    a = answer["measurements"]
    assert [p["rate"] for p in a["probes"]] == [p["config"]["rate"] for p in probes]
    passed = [p["rate"] for p in a["probes"] if p["sustained"]]
    assert a["sustained_rate"] == (max(passed) if passed else None)
    fixed = results[-1]["measurements"]
    assert fixed["target_bounds_ms"] == {"p50": 50, "p95": 100, "p99": 200}
    assert fixed["targets"] == {p: fixed["latency_ms"][p] < bound
                                for p, bound in fixed["target_bounds_ms"].items()}


def test_scalability_pairs_consumers_with_messages_and_runs_concurrent_producers(tmp_path):
    """cases pair concurrency with messages (2 cases, not 4); 3 producer processes and 2
    consumers deliver every message; partitions mean nothing for a SQL queue (None)."""
    results = run_scenario(tmp_path, "scalability", "work_ms=0",
                           "cases=[{messages: 20, consumers: {concurrency: 2}}, "
                           "{messages: 40, consumers: {concurrency: 4}, "
                           "producers: {mode: processes, count: 3}}]")
    shapes = [(r["config"]["concurrency"], r["config"]["messages"], r["config"]["producers"])
              for r in results]
    assert shapes == [(2, 20, 1), (4, 40, 3)]
    for r in results:
        assert r["status"] == "ok" and r["measurements"]["lost"] == 0
        assert r["measurements"]["partitions"] is None


def test_forked_consumers_share_pages_which_pss_splits_and_rss_counts_in_each(tmp_path):
    """4 Celery prefork children share most of their pages with the worker that forked them:
    RSS counts those pages in all 5 processes, PSS once (measured 27 MB a child against 78)."""
    pair = f"celery+sqlite:///{tmp_path / 'queue.sqlite'}"
    proc = subprocess.run(
        [sys.executable, "-m", "queuebench", "run", "scalability", "--pair", pair, "--variant",
         "default", "--reports-dir", str(tmp_path), "--name", "pss", "--set", "work_ms=0",
         "--set", "cases=[{messages: 20, consumers: {concurrency: 4}}]"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_SEC)
    assert proc.returncode == 0, proc.stderr
    [results] = tmp_path.glob("*-pss/results.json")
    [m] = [r["measurements"] for r in json.loads(results.read_text())["results"]]
    assert m["successful"] == 20
    assert 0 < m["consumer_pss_mb_per_unit"] < m["consumer_rss_mb_per_unit"] / 2


def test_producer_modes_say_what_a_pair_cannot_do_in_one_line(tmp_path):
    """A SQL queue has no asynchronous send and no partitions: those rows are "n/a" with the
    reason, and the rows that mean something run."""
    results = run_scenario(tmp_path, "producer-modes", "messages=20", "repeats=1",
                           "partitions=[1, 4]",
                           "cases=[{producers: {mode: sync}}, "
                           "{producers: {mode: async, in_flight: 16}}]")
    status = [(r["config"]["producer_mode"], r["measurements"].get("partitions", "-"),
               r["status"]) for r in results]
    assert [s[2] for s in status] == ["ok", "ok", "n/a", "n/a", "n/a"]  # calibration first
    reasons = [r["measurements"]["not_applicable"] for r in results[2:]]
    assert "has no partitions" in reasons[0] and "no asynchronous send" in reasons[1]


def test_producer_modes_send_a_slow_consumer_what_it_drains_in_drain_sec(tmp_path):
    """A consumer that would take longer than drain_sec to drain the case's messages gets as
    many as a calibration of 1,000 found it drains in that time, and never fewer than those
    1,000: a case of 3,000 with half a second to drain sends 1,000, in each mode."""
    results = run_scenario(tmp_path, "producer-modes", "messages=3000", "repeats=1",
                           "drain_sec=0.5", "cases=[{producers: {mode: sync}}, "
                           "{producers: {mode: processes, count: 2}}]")
    rows = [(r["config"]["producer_mode"], r["config"]["producers"], r["config"]["messages"],
             r["measurements"]["successful"]) for r in results if r["status"] != "n/a"]
    assert rows == [("sync", 1, 1000, 1000), ("sync", 1, 1000, 1000),
                    ("processes", 2, 1000, 1000)]


@pytest.mark.slow
def test_producer_processes_leave_a_used_sqlite_queue_whole(tmp_path):
    """Producer processes in a run whose earlier cases used the queue's SQLite file: every case
    receives all it sent. Processes forked from the harness inherited SQLite's state of the file
    and wrote into a WAL the last consumer had deleted: the 4-process case lost its 2,000
    messages, 3 runs in 3, with the partition counts' "n/a" rows between the cases (not without
    them). Then the harness read "database disk image is malformed"."""
    results = run_scenario(tmp_path, "producer-modes", "messages=2000", "repeats=1",
                           "deadline_sec=20", "cases=[{producers: {mode: sync}}, "
                           "{producers: {mode: processes, count: [1, 2, 4]}}]")
    rows = [(r["config"]["producers"], r["measurements"]["outcome"], r["measurements"]["lost"])
            for r in results if r["status"] != "n/a"]
    calibration = (1, "complete", 0)  # the drain's: 1,000 messages sent one at a time
    assert rows == [calibration, (1, "complete", 0), (1, "complete", 0), (2, "complete", 0),
                    (4, "complete", 0)]


@pytest.mark.parametrize("name", ["scalability", "burst", "sustained", "payload-sizes", "mixed",
                                  "error-rate", "producer-modes"])
def test_each_scenario_file_is_at_the_seeds_size_with_a_description(name):
    """The shipped scenario files load, describe what they answer, and keep the seed's sizes."""
    workloads = load(name)
    assert all(w.description for _, w in workloads)
    all_cells = [c for n, w in workloads for c in cells(n, w)]
    sizes = {"scalability": {(c.concurrency, c.messages) for c in all_cells},
             "burst": {c.messages for c in all_cells}}
    if name == "scalability":
        assert {(100, 1000), (500, 2000), (900, 3000), (5, 500), (3, 300)} <= sizes[name]
    if name == "burst":
        assert sizes[name] == {650}


def test_a_fleet_that_would_not_fit_in_memory_runs_the_largest_that_does(tmp_path, monkeypatch):
    """Units measured at 10 MB each beside a 40 MB process, 300 MB available (x 0.8): 100 units
    asked, 20 run, and the row says why; 10 units are never probed."""
    from queuebench.engine import runner
    from queuebench.engine.workload import Workload

    monkeypatch.setattr(runner, "memory_per_unit", lambda *args: (10e6, 40e6))
    monkeypatch.setattr(runner, "available_memory_bytes", lambda: 300e6)
    state = runner.PlanRun.__new__(runner.PlanRun)
    state._unit_memory, state.cluster = {}, None
    adapter = adapters.create(f"sqlalchemy+sqlite:///{tmp_path / 'q.sqlite'}", queue="q")
    [big] = cells("x", Workload(messages=10, consumers={"concurrency": 100}))
    cell, capped = state._fitting(big, adapter, [], tmp_path)
    assert cell.concurrency == capped["ran_concurrency"] == 20
    assert capped["asked_concurrency"] == 100 and "would not fit in 240 MB" in capped["reason"]
    [small] = cells("x", Workload(messages=10, consumers={"concurrency": 10}))
    assert state._fitting(small, adapter, [], tmp_path) == (small, None)


def test_memory_per_unit_is_measured_from_a_real_consumer(tmp_path):
    """A consumer process of the SQL queue measures tens of MB, a thread of it far less."""
    from queuebench.engine.runner import memory_per_unit
    from queuebench.engine.workload import Workload
    from queuebench.payloads.builder import record_batches

    adapter = adapters.create(f"sqlalchemy+sqlite:///{tmp_path / 'q.sqlite'}", queue="q")
    [cell] = cells("x", Workload(messages=1, payload={"records": 1}))
    per_unit, process = memory_per_unit(cell, adapter, record_batches("sqlite://", 1, 1),
                                        tmp_path)
    assert process > 10e6 and per_unit < process
