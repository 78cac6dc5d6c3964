"""Run folders are written atomically, and the report leads with the measured answer."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hdrh.histogram import HdrHistogram

import queuebench.report as report_package
from queuebench.adapters.base import Backlog
from queuebench.engine.common import broker_check
from queuebench.engine.environment import machine_manifest
from queuebench.engine.ledger import Receipt, Receipts, tally
from queuebench.engine.metrics import latency_ms, latency_summary_and_histogram, merged_latency_ms
from queuebench.engine.results import (
    ExperimentConfig,
    Result,
    RunFolder,
    load_run,
    merge_runs,
    newest_runs,
)
from queuebench.errors import QueuebenchError, UsageError
from queuebench.report import NO_CHARTS, render, write_report

CAPABILITIES = {"ack": "a", "on_worker_killed": "k", "redelivery_after": "r", "ordering": "o",
                "carries_bytes": "c"}
INFO = {"pair": "p", "variant": "default", "variant_note": "", "url": "u", "library": "lib",
        "broker": "b", "capabilities": CAPABILITIES,
        "size_limit": {"max_bytes": 1000, "error": "too big"}, "delivery_settings": {"x": 1},
        "library_version": "1.0", "broker_version": None}


FITS = {"wire_bytes": 1, "fits": True}


def measurements(lost=0, duplicates=0, consume=None, **extra) -> dict:
    return {"total": 10, "successful": 10 - lost, "failed": lost, "lost": lost,
            "lost_seqs": list(range(lost)), "duplicates": duplicates,
            "duplicate_seqs": [9] if duplicates else [], "corrupt": 0,
            "message_loss_pct": lost * 10,
            "latency_ms": {"min": 1.0, "max": 9.0, "mean": 3.0, "stddev": 1.0, "p50": 2.0,
                           "p95": 8.0, "p99": 9.0},
            "outcome": "complete", "duration_sec": 1.0, "payload_bytes": 100,
            "time_to_produce_sec": 0.1, "produce_throughput": 100.0, "consumer_startup_sec": 0.5,
            "time_to_consume_sec": 1.0, "consume_throughput": consume, "consume_mb_s": 0.01,
            "stopped_after": 5, "graceful_stop_sec": 31.8,
            "broker_check": {"checked": True, "waiting": 0, "stranded": lost, "agrees": True,
                             "detail": "d"}, **extra}


def config(scenario, pair, stop=None, fmt="json") -> ExperimentConfig:
    return ExperimentConfig(scenario, pair, "default", fmt, 10, 100, 20.0, 60.0,
                            wait_sec=1.0 if stop else None, stop=stop)


def result(cfg, status="ok", m=None, error=None) -> dict:
    return Result(cfg, status, {**INFO, "pair": cfg.pair}, m or {}, error).to_dict()


def document(results: list[dict]) -> dict:
    return {"schema": 1, "run": {"name": "t", "command": "queuebench run", "started_at": "now",
                                 "finished_at": "later", "complete": True},
            "environment": {"host": "h", "cores": 2}, "payload_sizes": [], "results": results}


def test_answer_names_resilient_lossy_fastest_and_no_go_with_their_figures():
    """The first section names each verdict with the figure that decides it."""
    text = render(document([
        result(config("reliability", "safe", "kill"), m=measurements()),
        result(config("reliability", "lossy", "kill"), m=measurements(lost=2)),
        result(config("throughput", "slow"), m=measurements(consume=50.0)),
        result(config("throughput", "quick"), m=measurements(consume=900.0)),
        result(config("throughput", "small"), status="no-go", error="payload 2,000 > 1,000"),
    ]))
    answer = text.split("## Reliability")[0]
    assert ("**Most resilient (kills only):** safe: no message lost or duplicated when killed "
            "(not stopped gracefully in this run).") in answer  # only killed in this run
    assert "lossy: 2 of 10 on kill (json)" in answer
    assert "**Fastest (json):** quick, 900.0 msg/s consumed" in answer
    assert "**No Go** small" in answer and "payload 2,000 > 1,000" in answer


def test_answer_names_the_fastest_pair_of_each_broker():
    """With several brokers, each one's fastest pair is named with its msg/s."""
    runs = [result(config("throughput", pair), m=measurements(consume=rate))
            for pair, rate in (("k1", 900.0), ("k2", 950.0), ("r1", 40.0), ("r2", 30.0))]
    for run, broker in zip(runs, ("kafka", "kafka", "redis", "redis"), strict=True):
        run["pair_info"]["broker"] = broker
    answer = render(document(runs)).split("## Reliability")[0]
    assert ("**Fastest per broker (json):** kafka: k2 950.0 msg/s (10 messages in 1.0 s); "
            "redis: r1 40.0 msg/s (10 messages in 1.0 s).") in answer


def test_unmeasured_figures_are_na_and_errors_are_listed():
    """A missing figure is shown as n/a and an error is an error, never a verdict."""
    text = render(document([
        result(config("throughput", "p"), m=measurements(consume=10.0, latency_ms=None)),
        result(config("reliability", "broken", "kill"), status="error", error="worker died"),
    ]))
    assert "| n/a |" in text
    assert "## Errors" in text and "broken json: worker died" in text
    assert "Most resilient" not in text


def test_throughput_cut_by_its_deadline_shows_what_arrived_not_a_loss():
    """Messages a throughput run had not received by its deadline are not called lost."""
    text = render(document([result(config("throughput", "slow"), m=measurements(
        lost=6, consume=2.0, outcome="deadline"))]))
    header, _, row = text.split("## Throughput")[1].strip().splitlines()[2:5]
    cells = dict(zip(header.split("|"), row.split("|"), strict=True))
    assert (cells[" received "], cells[" ended by "]) == (" 4 ", " incomplete (deadline) ")
    assert " lost " not in header


def test_reliability_rows_show_how_long_a_graceful_stop_took():
    """A warm shutdown that takes half a minute is a finding, shown beside the counts."""
    text = render(document([result(config("reliability", "slow-stop", "graceful"),
                                   m=measurements())]))
    header, _, row = text.split("## Reliability")[1].strip().splitlines()[2:5]
    cells = dict(zip(header.split("|"), row.split("|"), strict=True))
    assert cells[" graceful stop s "] == " 31.80 "


def test_a_stop_that_found_no_task_in_hand_says_so_on_its_row():
    """A kill between tasks tests less than a kill mid-task; the row must not pass as one."""
    text = render(document([
        result(config("reliability", "aimed", "kill"), m=measurements(stopped_mid_task=True)),
        result(config("reliability", "idle", "kill"), m=measurements(stopped_mid_task=False))]))
    rows = text.split("## Reliability")[1].strip().splitlines()[4:6]
    assert [row.split("|")[3].strip() for row in rows] == ["kill", "kill (between tasks)"]


def test_run_folder_is_readable_after_every_result_and_marked_incomplete(tmp_path):
    """A crash mid-run leaves results.json complete JSON with the finished results."""
    folder = RunFolder(tmp_path, "t", command="c", manifest={"host": "h"})
    folder.add(Result(config("throughput", "p"), "ok", INFO, measurements(consume=1.0)))
    saved = json.loads((folder.path / "results.json").read_text())
    assert saved["run"]["complete"] is False
    assert len(saved["results"]) == 1
    assert "INCOMPLETE" in render(load_run(folder.path))


def test_finish_writes_report_and_points_latest(tmp_path):
    """finish marks the run complete, writes report.md and moves reports/latest to it."""
    first = RunFolder(tmp_path, "a", command="c", manifest={"host": "h"})
    first.finish(render)
    second = RunFolder(tmp_path, "b", command="c", manifest={"host": "h"})
    report = second.finish(render)
    assert report.read_text().startswith("# queuebench report: b")
    assert (tmp_path / "latest").resolve() == second.path.resolve()
    assert load_run(tmp_path / "latest")["run"]["complete"] is True


def test_unwritable_reports_folder_raises_one_line(tmp_path):
    """A reports folder that is a file raises an error naming --reports-dir."""
    blocker = tmp_path / "f"
    blocker.write_text("")
    with pytest.raises(QueuebenchError, match="--reports-dir"):
        RunFolder(blocker / "reports", "t", command="c", manifest={})


def test_seed_figures_stand_beside_ours_where_the_seed_has_them():
    """A run matching one of seed 003's experiments shows the seed's seconds beside ours."""
    ours = measurements(consume=50.0, time_to_produce_sec=12.5, time_to_consume_sec=40.0)
    cfg = ExperimentConfig("throughput", "kafka-python+kafka", "default", "json", 10_000, 100,
                           0.0, 600.0)
    text = render(document([result(cfg, m=ours),
                            result(config("throughput", "other"), m=measurements(consume=1.0))]))
    seed = text.split("## Beside the seed")[1].split("##")[0]
    assert "| kafka-python+kafka | json | throughput | 10,000 | 303.30 | 12.50 | 400.54 | 40.00 |" \
        in seed
    assert "other" not in seed


def run_part(started_at: str, results: list[dict]) -> dict:
    """A complete run document started at `started_at`, as merge_runs takes its parts."""
    return {**document(results), "run": {"name": started_at, "command": "c",
                                          "started_at": started_at, "finished_at": started_at,
                                          "complete": True}}


def test_a_case_measured_again_stands_as_the_newest_part_measured_it():
    """Two parts measured the same case (the later one after a fix): the merge keeps only the
    later part's repeats, in whatever order the parts come, and every other case of both."""
    def part(started_at: str, **rates: float) -> dict:
        return run_part(started_at, [result(config("throughput", pair),
                                            m=measurements(consume=rate))
                                     for pair, rate in rates.items()])

    old, new = part("2026-12-01T10:00", p=5.0, q=7.0), part("2026-12-02T10:00", p=9.0, r=3.0)
    for parts in ([old, new], [new, old]):
        merged = merge_runs(parts, "both")["results"]
        assert sorted((r["config"]["pair"], r["measurements"]["consume_throughput"])
                      for r in merged) == [("p", 9.0), ("q", 7.0), ("r", 3.0)]


def test_a_rate_search_run_again_replaces_the_old_searchs_probes_and_answer():
    """A search found 469 msg/s on a busy machine and 2,084 on an idle one, trying other rates:
    the merge keeps the new search's probes and its one answer, beside the fixed-rate rows."""
    def part(started_at: str, found: float, probe_rates: list[float]) -> dict:
        probes = [result(replace(config("throughput", "p"), rate=rate, messages=int(rate * 10)),
                         m=measurements(sustained_probe={"sustained": True, "why": None}))
                  for rate in probe_rates]
        answer = result(replace(config("sustained", "p"), rate=found),
                        m=measurements(sustained_rate=found))
        fixed = result(replace(config("throughput", "p"), rate=50.0), m=measurements(consume=found))
        return run_part(started_at, [*probes, answer, fixed])

    merged = merge_runs([part("2026-12-01T10:00", 469.0, [844.1, 469.0]),
                         part("2026-12-03T06:00", 2084.1, [1140.0, 2084.1])], "both")["results"]
    assert [(r["config"]["scenario"], r["config"]["rate"]) for r in merged] == [
        ("throughput", 1140.0), ("throughput", 2084.1), ("sustained", 2084.1),
        ("throughput", 50.0)]
    assert merged[-1]["measurements"]["consume_throughput"] == 2084.1


def test_a_merge_of_merges_keeps_each_results_own_run_and_judges_newest_by_it():
    """Reruns merged into a merged report: each row keeps the run that measured it (its name,
    start and commit), and a case is replaced only by a run newer than the one that measured
    it, not than the merged report's start (its oldest part's)."""
    def part(started_at: str, commit: str, **rates: float) -> dict:
        run = run_part(started_at, [result(config("throughput", pair), m=measurements(consume=r))
                                    for pair, r in rates.items()])
        return {**run, "environment": {**run["environment"], "commit": commit}}

    night = merge_runs([part("2026-12-01T18:00", "c1", p=5.0, q=7.0),
                        part("2026-12-03T06:00", "c3", p=9.0)], "night")
    again = merge_runs([night, part("2026-12-02T10:00", "c2", p=1.0, q=8.0)], "again")
    assert [(r["config"]["pair"], r["measurements"]["consume_throughput"], r["part"])
            for r in again["results"]] == [
        ("p", 9.0, {"run": "2026-12-03T06:00", "started_at": "2026-12-03T06:00",
                    "commit": "c3"}),
        ("q", 8.0, {"run": "2026-12-02T10:00", "started_at": "2026-12-02T10:00",
                    "commit": "c2"})]


def test_a_merged_manifest_shows_every_part_s_machine_not_the_first_one_s():
    """Parts run on two kernels, with yardsticks 99,604 and 210,000 round trips/s: the merged
    manifest shows both kernels and the yardstick's range; what they share stays one value, a
    cluster's manifest is the first part's, and each result keeps its own part's machine."""
    def part(started_at: str, kernel: str, trips: int) -> dict:
        run = run_part(started_at, [result(config("throughput", started_at), m=measurements())])
        return {**run, "environment": {**run["environment"], "os": kernel,
                                       "json_round_trips_per_sec": trips, "fsync_4k_ms": 0.25,
                                       "cluster": {"address": kernel}}}

    merged = merge_runs([part("p1", "fc-v669", 210_000), part("p2", "fc-v1147", 99_604)], "m")
    assert {key: merged["environment"][key] for key in
            ("host", "os", "json_round_trips_per_sec", "fsync_4k_ms")} == {
        "host": "h", "os": "fc-v669, fc-v1147",
        "json_round_trips_per_sec": "99604 to 210000 over 2 runs", "fsync_4k_ms": 0.25}
    assert merged["environment"]["cluster"] == {"address": "fc-v669"}  # the first part's
    assert [(r["part"]["os"], r["part"]["json_round_trips_per_sec"])
            for r in merged["results"]] == [("fc-v669", 210_000), ("fc-v1147", 99_604)]


def test_a_case_run_before_a_config_field_existed_is_replaced_by_its_rerun():
    """sqlalchemy+sqlite's first night ran before configs had `durability`: its rerun stood
    beside it, two rows for one case, until a missing field read as its default."""
    def part(started_at: str, rate: float, drop: str | None = None) -> dict:
        old = result(config("throughput", "p"), m=measurements(consume=rate))
        old["config"].pop(drop, None)
        return run_part(started_at, [old])

    merged = merge_runs([part("2026-12-01T10:00", 758.2, drop="durability"),
                         part("2026-12-03T08:00", 1199.5)], "both")["results"]
    assert [r["measurements"]["consume_throughput"] for r in merged] == [1199.5]


def test_a_capped_case_measured_again_at_another_cap_is_the_same_case():
    """900 rq workers asked, 605 fitted in one run and 647 in the next: the merge kept both rows."""
    def part(started_at: str, ran: int, rate: float) -> dict:
        capped = {"asked_concurrency": 900, "ran_concurrency": ran}
        cfg = replace(config("throughput", "p"), concurrency=ran)
        return run_part(started_at, [result(cfg, m=measurements(consume=rate, capped=capped))])

    merged = merge_runs([part("2026-12-01T10:00", 605, 18.2), part("2026-12-02T10:00", 647, 14.3)],
                        "both")["results"]
    assert [(r["config"]["concurrency"], r["measurements"]["consume_throughput"])
            for r in merged] == [(647, 14.3)]


def test_merge_keeps_every_result_and_is_complete_only_if_every_run_was(tmp_path):
    """Merged runs hold all results, union the size table, and stay INCOMPLETE if one part is."""
    first = RunFolder(tmp_path, "a", command="qa", manifest={"host": "h", "commit": "c1"})
    first.set_payload_sizes([{"records": 100, "format": "json", "bytes": 1, "pairs": {"p": FITS}}])
    first.add(Result(config("throughput", "p"), "ok", INFO, measurements(consume=5.0)))
    first.finish(render)
    second = RunFolder(tmp_path, "b", command="qb", manifest={"host": "h", "commit": "c2"})
    second.set_payload_sizes([{"records": 100, "format": "json", "bytes": 1, "pairs": {"q": FITS}}])
    second.add(Result(config("throughput", "q"), "ok", INFO, measurements(consume=9.0)))
    merged = merge_runs([load_run(first.path), load_run(second.path)], "both")
    assert [r["config"]["pair"] for r in merged["results"]] == ["p", "q"]
    assert set(merged["payload_sizes"][0]["pairs"]) == {"p", "q"}
    assert merged["run"]["complete"] is False
    assert merged["environment"]["commit"] == "c1, c2"  # parts run at different commits say so
    assert "**Fastest (json):** q" in render(merged)


def test_the_manifest_names_the_commit_the_code_ran_from():
    """A result can be traced to its code: the checkout's commit, marked if it had changes."""
    git = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], capture_output=True,
                         text=True, cwd=Path(__file__).parent)
    head = git.stdout.strip()
    expected = (head, head + "+changes") if git.returncode == 0 else (None,)  # not a checkout
    assert machine_manifest()["commit"] in expected


def test_the_manifest_times_the_machine_s_yardstick():
    """Each run measures its machine: JSON round trips a second and a 4 KiB fsync."""
    manifest = machine_manifest()
    assert manifest["json_round_trips_per_sec"] > 1000
    assert 0 < manifest["fsync_4k_ms"] < 1000


def test_newest_runs_picks_the_newest_complete_run_of_each_name(tmp_path):
    """`report` with no folder merges the newest complete run of each run name."""
    old = RunFolder(tmp_path, "x", command="c", manifest={})
    old.finish(render)
    old.path.rename(tmp_path / "20200101T000000Z-x")
    new = RunFolder(tmp_path, "x", command="c", manifest={})
    new.finish(render)
    RunFolder(tmp_path, "y", command="c", manifest={})  # never finished: left out
    assert newest_runs(tmp_path) == [new.path]


def answer_of(results: list[dict]) -> str:
    return render(document(results)).split("## Reliability")[0]


def section_rows(text: str, section: str) -> list[dict[str, str]]:
    """The rows of the first table under `section`, as {header: cell} with cells stripped."""
    lines = [line for line in text.split(f"## {section}")[1].split("\n## ")[0].splitlines()
             if line.startswith("|")]
    headers = [h.strip() for h in lines[0].strip("|").split("|")]
    return [dict(zip(headers, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]


def test_a_row_cut_short_by_its_deadline_is_incomplete_not_a_loss():
    """Issue 8: with --deadline 1 a pair that never loses was headlined as losing 29 of 60."""
    cut = measurements(lost=4, outcome="deadline")
    text = render(document([
        result(config("reliability", "sqlite", "graceful"), m=measurements()),
        result(config("reliability", "sqlite", "kill"), m=cut),  # an old file: "ok"
        result(config("reliability", "pg", "kill"), status="incomplete", m=cut),  # the runner now
        result(config("throughput", "quick"), m=measurements(consume=900.0)),
        result(config("throughput", "cut"), status="incomplete",
               m=measurements(lost=6, consume=5000.0, outcome="deadline")),
    ]))
    answer = text.split("## Reliability")[0]
    assert "Loses messages" not in answer
    assert "in any stop or kill" not in answer
    assert "**Fastest (json):** quick" in answer
    incomplete = [line for line in answer.splitlines() if "Incomplete" in line]
    assert len(incomplete) == 1
    assert all(name in incomplete[0] for name in ("sqlite json kill", "pg json kill", "cut json"))
    rows = section_rows(text, "Reliability")
    assert [(r["pair"], r["lost"], r["ended by"]) for r in rows[1:]] == [
        ("sqlite", "not received: 4 (cut short)", "incomplete (deadline)"),
        ("pg", "not received: 4 (cut short)", "incomplete (deadline)")]
    assert section_rows(text, "Throughput")[1]["ended by"] == "incomplete (deadline)"


def test_most_resilient_claims_only_the_stops_that_ran_for_the_pair():
    """A pair only stopped gracefully was never killed: its clean record says so."""
    answer = answer_of([
        result(config("reliability", "both", "graceful"), m=measurements()),
        result(config("reliability", "both", "kill"), m=measurements()),
        result(config("reliability", "soft", "graceful"), m=measurements()),
        result(config("reliability", "gentle", "graceful"), m=measurements()),
    ])
    assert "**Most resilient:** both: no message lost or duplicated in any stop or kill." in answer
    assert ("soft, gentle: no message lost or duplicated when stopped gracefully "
            "(not killed in this run)") in answer
    full = next(line for line in answer.splitlines() if "in any stop or kill" in line)
    assert "soft" not in full and "gentle" not in full


def test_fastest_ranks_only_clean_runs_long_enough_and_names_count_and_time():
    """The headline rate names N and the time behind it; a sub-second rate is not ranked."""
    def run(pair, broker, fmt="json", **m):
        r = result(config("throughput", pair, fmt=fmt), m=measurements(**m))
        r["pair_info"]["broker"] = broker
        return r

    answer = answer_of([
        run("quick", "kafka", consume=900.0, time_to_consume_sec=11.1),
        run("blink", "kafka", consume=50_000.0, time_to_consume_sec=0.4),
        run("leaky", "kafka", consume=5000.0, time_to_consume_sec=5.0, lost=2),
        run("garbled", "kafka", consume=4000.0, time_to_consume_sec=5.0, corrupt=1),
        run("slowpoke", "redis", consume=30.0, time_to_consume_sec=20.0),
        run("flash", "redis", "protobuf", consume=9000.0, time_to_consume_sec=0.2),
    ])
    fastest = next(line for line in answer.splitlines() if "**Fastest (json)" in line)
    assert fastest.startswith(
        "- **Fastest (json):** quick, 900.0 msg/s consumed (10 messages in 11.1 s)")
    assert "blink, 50,000.0 msg/s measured over 0.4 s, too short to rank" in fastest
    assert "leaky" not in fastest and "garbled" not in fastest
    assert ("**Fastest per broker (json):** kafka: quick 900.0 msg/s (10 messages in 11.1 s); "
            "redis: slowpoke 30.0 msg/s (10 messages in 20.0 s).") in answer
    protobuf = next(line for line in answer.splitlines() if "**Fastest (protobuf)" in line)
    assert "no rate was measured long enough to rank" in protobuf
    assert "flash, 9,000.0 msg/s measured over 0.2 s, too short to rank" in protobuf


def test_broker_check_cannot_tell_where_the_broker_cannot_count_stranded_messages():
    """A broker that keeps processed and stranded rows alike neither agrees nor disagrees."""
    lost_one = tally(Receipts.of([Receipt(0, 1, 2, True)]), 2)
    assert broker_check(Backlog(waiting=0, stranded=None, detail="d"), lost_one)["agrees"] is None
    assert broker_check(Backlog(waiting=3, stranded=None, detail="d"), lost_one)["agrees"] is False
    assert broker_check(Backlog(waiting=0, stranded=1, detail="d"), lost_one)["agrees"] is True
    assert broker_check(Backlog(waiting=0, stranded=2, detail="d"), lost_one)["agrees"] is False
    cannot = measurements(broker_check={"checked": True, "waiting": 0, "stranded": None,
                                        "agrees": None, "detail": "rows kept"})
    old = measurements(broker_check={"checked": True, "waiting": 0, "stranded": None,
                                     "agrees": True, "detail": "rows kept"})  # an old file
    text = render(document([result(config("reliability", "new", "kill"), m=cannot),
                            result(config("reliability", "old", "kill"), m=old)]))
    assert [r["broker check"] for r in section_rows(text, "Reliability")] == [
        "cannot tell: rows kept", "cannot tell: rows kept"]


def test_corrupt_receipts_are_shown_and_keep_a_pair_from_the_headlines():
    """Bytes changed in transit are a finding of their own, never most resilient or fastest."""
    text = render(document([
        result(config("reliability", "garbled", "graceful"), m=measurements(corrupt=2)),
        result(config("reliability", "garbled", "kill"), m=measurements(corrupt=1)),
        result(config("reliability", "clean", "graceful"), m=measurements()),
        result(config("reliability", "clean", "kill"), m=measurements()),
        result(config("throughput", "garbled"), m=measurements(consume=900.0, corrupt=1)),
        result(config("throughput", "clean"), m=measurements(consume=50.0)),
    ]))
    answer = text.split("## Reliability")[0]
    assert "- **Changes bytes:** garbled (4 corrupt)." in answer.splitlines()
    assert "**Most resilient:** clean:" in answer
    assert "**Fastest (json):** clean," in answer
    assert [r["corrupt"] for r in section_rows(text, "Reliability")] == ["2", "1", "0", "0"]
    assert [r["corrupt"] for r in section_rows(text, "Throughput")] == ["1", "0"]


def test_the_settings_table_shows_each_pairs_serializer_and_old_files_render():
    """The serializer column reads n/a for a file written before it; missing figures too."""
    with_serializer = result(config("throughput", "pickled"), m=measurements(consume=5.0))
    with_serializer["pair_info"]["capabilities"] = {**CAPABILITIES, "serializer": "pickle: RCE"}
    old = measurements(consume=5.0)
    for key in ("corrupt", "broker_check", "graceful_stop_sec", "stopped_after"):
        del old[key]
    text = render(document([with_serializer, result(config("throughput", "old"), m=old),
                            result(config("reliability", "old", "kill"), m=old)]))
    assert [r["serializer"] for r in section_rows(text, "Pairs and delivery settings")] == [
        "pickle: RCE", "n/a"]
    assert section_rows(text, "Reliability")[0]["broker check"] == "n/a"
    assert section_rows(text, "Throughput")[1]["corrupt"] == "n/a"


# Issue 9: each case runs `repeats` times; every repeat is its own result (config["repeat"]).

def repeats(cfg: ExperimentConfig, *runs: dict, statuses: Sequence[str] = ()) -> list[dict]:
    """One result a repeat of `cfg`, numbered 0, 1, 2... (status "ok" unless given)."""
    out = []
    for i, m in enumerate(runs):
        r = result(cfg, status=statuses[i] if i < len(statuses) else "ok", m=m)
        r["config"]["repeat"] = i
        out.append(r)
    return out


def timed(latencies_ms: list[float], **extra) -> dict:
    """Throughput figures whose latency summary and histogram come from real latencies."""
    summary, histogram = latency_summary_and_histogram(int(ms * 1e6) for ms in latencies_ms)
    return measurements(latency_ms=summary, latency_histogram=histogram, **extra)


def test_a_histogram_is_kept_encoded_and_merged_histograms_are_the_union():
    """The engine keeps each repeat's histogram; merged, they give the union's figures."""
    rng = random.Random(9)
    first = [rng.randint(100_000, 40_000_000) for _ in range(4000)]
    second = [rng.randint(2_000_000, 900_000_000) for _ in range(1500)]
    summary, encoded = latency_summary_and_histogram(iter(first))  # one pass over a generator
    assert summary == latency_ms(first)
    assert isinstance(encoded, str) and json.loads(json.dumps(encoded)) == encoded
    merged = merged_latency_ms([encoded, latency_summary_and_histogram(second)[1]])
    union = latency_ms(first + second)
    assert merged.keys() == union.keys()
    for key, value in union.items():
        assert merged[key] == pytest.approx(value, rel=1e-3, abs=1e-3), key  # 3 digits
    assert merged["p99"] > max(first) / 1e6  # the second run's tail counts
    assert latency_summary_and_histogram([]) == (None, None)
    assert merged_latency_ms([]) is None
    with pytest.raises(ValueError, match="not an encoded latency histogram"):
        merged_latency_ms(["not a histogram"])


@pytest.mark.parametrize("count", [1, 7, 3000])
def test_the_latency_summary_is_the_figures_hdrh_computes(count):
    """The summary is computed over the counts array at once; each figure is still exactly the
    one hdrh's own (bucket by bucket) methods give."""
    rng = random.Random(count)
    latencies_ns = [int(rng.lognormvariate(rng.uniform(12, 20), 1.5)) for _ in range(count)]
    histogram = HdrHistogram(1, 3_600_000_000, 3)
    for ns in latencies_ns:
        histogram.record_value(min(max(ns // 1000, 1), 3_600_000_000))
    hdrh_own = {"min": histogram.get_min_value(), "max": histogram.get_max_value(),
                "mean": histogram.get_mean_value(), "stddev": histogram.get_stddev(),
                **{f"p{p}": histogram.get_value_at_percentile(p) for p in (50, 95, 99)}}
    assert latency_ms(latencies_ns) == {key: round(us / 1000, 3) for key, us in hdrh_own.items()}


def test_results_are_written_as_schema_2_and_schema_1_files_still_load(tmp_path):
    """A run writes schema 2; a schema 1 file (no repeats) loads and renders; others do not."""
    folder = RunFolder(tmp_path, "t", command="c", manifest={"host": "h"})
    folder.finish(render)
    assert json.loads((folder.path / "results.json").read_text())["schema"] == 2
    old = tmp_path / "old"
    old.mkdir()
    for schema in (1, 2):
        (old / "results.json").write_text(json.dumps({**document([]), "schema": schema}))
        assert load_run(old)["schema"] == schema
    for schema in (3, True, "2"):
        (old / "results.json").write_text(json.dumps({**document([]), "schema": schema}))
        with pytest.raises(UsageError, match="not a queuebench results file of schema 1 or 2"):
            load_run(old)
    assert merge_runs([document([]), load_run(folder.path)], "both")["schema"] == 2
    reference = Path(__file__).parent.parent / "reports" / "REFERENCE"
    if (reference / "results.json").is_file():  # the committed schema 1 reference run
        rendered = render(load_run(reference))
        assert rendered.split("## Findings")[0] == (
            (reference.parent / "REFERENCE.md").read_text().split("## Findings")[0])
        assert "repeat" not in rendered.split("## Reliability")[1]  # no repeat column


def test_a_case_run_thrice_is_one_throughput_row_of_medians_with_their_spread():
    """msg/s, MB/s and latency read median (lowest-highest); a wide spread is flagged; the
    percentiles come from the repeats' histograms merged."""
    cfg = config("throughput", "quick")
    runs = repeats(cfg, *(timed([ms] * 100, consume=rate, produce_throughput=100.0 + i)
                          for i, (ms, rate) in enumerate(((1, 1000.0), (2, 1100.0),
                                                          (50, 1300.0)))))
    text = render(document([*runs, result(config("throughput", "once"),
                                          m=measurements(consume=700.0))]))
    rows = section_rows(text, "Throughput")
    assert [r["pair"] for r in rows] == ["quick", "once"]
    quick, once = rows
    assert quick["repeats"] == "3 complete of 3" and once["repeats"] == "1 complete of 1"
    assert quick["consume msg/s"] == "1,100.0 (1,000.0\u20131,300.0) \u26a0"  # spread 27%
    assert quick["produce msg/s"] == "101.0 (100.0\u2013102.0)"  # 2%: steady, no flag
    assert quick["consume MB/s"] == "0.010 (0.010\u20130.010)"
    # p99 of all 300 latencies is the third repeat's 50 ms, not the median repeat's 2 ms.
    union = latency_ms([ms * 1_000_000 for ms in [1] * 100 + [2] * 100 + [50] * 100])
    assert quick["p99 ms"].startswith(f"{union['p99']:,.2f} (1.00\u2013")
    assert quick["p99 ms"].endswith("\u26a0")
    assert quick["received"] == "10" and quick["ended by"] == "complete"
    assert once["consume msg/s"] == "700.0"  # a case run once reads as before
    answer = text.split("## Reliability")[0]
    unstable = next(line for line in answer.splitlines() if "Unstable across repeats" in line)
    assert "quick json: consume msg/s 27%" in unstable and "once" not in unstable
    assert "produce msg/s" not in unstable


def test_latency_is_the_median_of_the_repeats_when_one_kept_no_histogram():
    """Without every repeat's histogram the percentiles are the median of the repeats' own."""
    runs = repeats(config("throughput", "old"), *(timed([ms] * 100, consume=1000.0)
                                                  for ms in (1, 2, 50)))
    del runs[0]["measurements"]["latency_histogram"]
    quick = section_rows(render(document(runs)), "Throughput")[0]
    assert quick["p99 ms"].startswith("2.00 (1.00\u2013")


def test_fastest_ranks_cases_by_their_median_over_clean_repeats():
    """The headline rate is a median of N repeats with its spread; one high repeat does not
    win, and a case with a repeat cut short or lossy is not ranked, which the line says."""
    def case(pair, *rates, lost=(), statuses=()):
        return repeats(config("throughput", pair), *(
            measurements(consume=rate, time_to_consume_sec=2.0,
                         lost=lost[i] if i < len(lost) else 0)
            for i, rate in enumerate(rates)), statuses=statuses)

    answer = answer_of([*case("steady", 500.0, 520.0, 510.0),
                        *case("spiky", 300.0, 2000.0, 305.0),
                        *case("flaky", 900.0, 950.0, 990.0, statuses=("ok", "incomplete")),
                        *case("leaky", 800.0, 800.0, 800.0, lost=(0, 0, 1))])
    fastest = next(line for line in answer.splitlines() if "**Fastest (json)" in line)
    assert fastest.startswith(
        "- **Fastest (json):** steady, 510.0 msg/s consumed (median of 3 repeats, "
        "500.0\u2013520.0; 10 messages in a median 2.0 s), 100.0 msg/s produced")
    assert ("Not ranked, as not every repeat ended clean: flaky (1 of 3 repeats cut short); "
            "leaky (1 of 3 repeats lost messages).") in fastest
    assert "spiky" not in fastest


def test_losses_count_every_repeat_and_reliability_rows_stay_one_per_trial():
    """A pair that lost in any repeat loses, "in K of N repeats"; each repeat keeps its row."""
    def kills(pair, *lost, statuses=()):
        return repeats(config("reliability", pair, "kill"),
                       *(measurements(lost=n) for n in lost), statuses=statuses)

    text = render(document([
        *kills("sometimes", 0, 1, 1),
        *kills("solid", 0, 0, 0),
        *repeats(config("reliability", "solid", "graceful"), *[measurements()] * 3),
        *kills("cutty", 2, 0, 0, statuses=("ok", "ok", "incomplete")),
        *kills("shaky", 0, 0, statuses=("ok", "error")),
        *repeats(config("throughput", "big"), {}, {}, statuses=("no-go", "no-go")),
    ]))
    answer = text.split("## Reliability")[0]
    assert ("- **Loses messages:** sometimes: 1 of 10 on kill (json) in 2 of 3 repeats; "
            "cutty: 2 of 10 on kill (json) in 1 of 2 complete repeats.") in answer.splitlines()
    resilient = next(line for line in answer.splitlines() if "Most resilient" in line)
    assert "solid" in resilient and "sometimes" not in resilient and "cutty" not in resilient
    assert "medians of 3 repeats" in resilient
    assert ("- **Most resilient (kills only):** shaky (1 of 2 repeats finished): no message lost"
            in answer)  # a clean record over fewer repeats than ran says so
    assert "cutty json kill repeat 3" in answer
    assert answer.count("**No Go** big") == 1  # once a case, not once a repeat
    rows = section_rows(text, "Reliability")
    assert [(r["pair"], r["repeat"], r["lost"]) for r in rows[:3]] == [
        ("sometimes", "1", "0"), ("sometimes", "2", "1"), ("sometimes", "3", "1")]
    assert "- sometimes json kill repeat 2: lost [0]" in text


# The answer as a matrix, "best for" lines, ties, results.csv, no charts extra.

def answer_section(results: list[dict]) -> str:
    return render(document(results)).split("## The answer")[1].split("\n## ")[0]


def matrix_rows(text: str) -> dict[str, dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    headers = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = [dict(zip(headers, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]
    return {row["pair"]: row for row in rows}


def test_the_answer_calls_a_pair_within_the_noise_tied_never_faster():
    """Spreads across repeats that overlap, or single figures within 10%, are "tied"."""
    def thrice(pair, *rates):
        return repeats(config("throughput", pair), *(
            measurements(consume=rate, time_to_consume_sec=2.0) for rate in rates))

    text = answer_section([*thrice("best", 1000.0, 1200.0, 1300.0),
                           *thrice("close", 900.0, 1100.0, 1050.0),  # overlaps best's spread
                           *thrice("apart", 700.0, 800.0, 750.0)])  # entirely below it
    rows = matrix_rows(text)
    assert [rows[p]["msg/s json"] for p in ("best", "close", "apart")] == [
        "1,200 \u2605", "1,050 =", "750"]
    speed = next(line for line in text.splitlines() if "Speed matters most" in line)
    assert speed.startswith("- **Speed matters most:** best (tied: close): 1,200 msg/s json")
    once = answer_section([result(config("throughput", "a"), m=measurements(consume=1000.0)),
                           result(config("throughput", "b"), m=measurements(consume=950.0)),
                           result(config("throughput", "c"), m=measurements(consume=800.0))])
    assert [matrix_rows(once)[p]["msg/s json"] for p in "abc"] == ["1,000 \u2605", "950 =", "800"]
    assert "within 10% with one repeat" in once


def test_the_matrix_marks_each_stop_and_never_draws_a_verdict_from_a_row_cut_short():
    """One short mark a cell; a trial cut short is "cut short", not a loss; columns appear
    only for what was measured."""
    text = answer_section([
        result(config("reliability", "safe", "graceful"), m=measurements()),
        result(config("reliability", "safe", "kill"), m=measurements()),
        result(config("reliability", "repeats", "kill"), m=measurements(duplicates=3)),
        result(config("reliability", "lossy", "kill"), m=measurements(lost=2)),
        result(config("reliability", "slow", "kill"), status="incomplete",
               m=measurements(lost=4, outcome="deadline")),
    ])
    rows = matrix_rows(text)
    assert list(rows["safe"]) == ["pair", "graceful stop", "SIGKILL"]  # no throughput measured
    assert [rows[p]["SIGKILL"] for p in ("safe", "repeats", "lossy", "slow")] == [
        "\u2713 none", "\u2248 3 dup", "\u2717 loses 2", "\u2026 cut short"]
    assert rows["lossy"]["graceful stop"] == "\u00b7"  # not run
    assert "- **Nothing may be lost:** safe: no message lost or repeated" in text


def test_the_answer_of_the_reference_fits_on_one_screen():
    """The committed reference: the answer section is about 40 lines."""
    reference = Path(__file__).parent.parent / "reports" / "REFERENCE"
    if not (reference / "results.json").is_file():
        pytest.skip("no reports/REFERENCE/results.json in this checkout")
    text = render(load_run(reference)).split("## The answer")[1].split("\n## ")[0]
    assert len(text.strip().splitlines()) <= 42


def test_a_report_renders_without_the_charts_extra_and_says_how_to_get_them(tmp_path,
                                                                               monkeypatch):
    """With matplotlib missing the report and results.csv are still written."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    # As in a process that never imported the charts: `from queuebench.report import charts`
    # would find an earlier test's module on the package.
    monkeypatch.delitem(sys.modules, "queuebench.report.charts", raising=False)
    monkeypatch.delattr(report_package, "charts", raising=False)
    text = write_report(tmp_path, document([
        result(config("throughput", "p"), m=measurements(consume=500.0))]))
    assert NO_CHARTS in text.split("## Charts")[1]
    assert not list(tmp_path.glob("*.png"))
    assert (tmp_path / "results.csv").is_file()


def test_results_csv_has_one_flat_row_per_result(tmp_path):
    """Every result is a row, the seed's names are the columns, summaries are flattened."""
    results = [result(config("throughput", "p"), m=measurements(consume=500.0)),
               result(config("reliability", "q", "kill"), m=measurements(lost=1)),
               result(config("reliability", "broken", "kill"), status="error", error="died")]
    write_report(tmp_path, document(results))
    with (tmp_path / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["pair"], r["status"]) for r in rows] == [
        ("p", "ok"), ("q", "ok"), ("broken", "error")]
    assert rows[0]["consume_throughput"] == "500.0" and rows[0]["latency_ms_p99"] == "9.0"
    assert rows[1]["lost"] == "1" and rows[2]["error"] == "died"
    assert rows[2]["consume_throughput"] == ""  # not measured: empty, never 0


def test_a_run_without_reliability_rows_has_no_empty_reliability_table():
    text = render(document([result(config("throughput", "huey+sqlite"),
                                   m=measurements(consume=100.0))]))
    assert "## Throughput" in text and "## Reliability" not in text


def test_the_manifest_shows_the_harness_share_of_the_machine():
    """Each repeat's host load gives the harness's CPU share a row of the manifest."""
    hosts = [{"cpu_busy_pct": 90.0, "harness_cpu_pct": pct, "harness_peak_rss_mb": 150.0}
             for pct in (10.0, 30.0, 20.0)]
    text = render(document([result(config("throughput", "huey+sqlite"),
                                    m=measurements(consume=100.0, host=host)) for host in hosts]))
    assert ("| harness CPU, % of the machine | median 20.0, highest 30.0 over 3 repeats "
            "(machine busy: median 90.0%) |") in text


def test_a_throughput_case_stands_beside_its_brokers_ceiling_at_about_its_size():
    """The ceiling nearest the message size (envelope counted) gives each rate its share; a
    broker not measured near that size, or a run without ceilings, shows no such section."""
    m = measurements(consume=100.0, payload_bytes=4_973, drain_throughput=21_000.0,
                     produce_throughput=40_000.0)
    doc = document([result(config("throughput", "confluent-kafka+kafka"), m=m)])
    assert "## Beside the broker's own ceiling" not in render(doc)
    kafka = {"broker": "kafka", "tool": "Kafka perf", "label": "", "size_bytes": 5_021,
             "messages": 1000, "produce_msg_s": 80_000.0, "produce_mb_s": 400.0,
             "consume_msg_s": 210_000.0, "consume_mb_s": 1000.0, "seconds": 1.0,
             "measured_at": "2026-12-01T00:00:00Z"}
    far = {**kafka, "size_bytes": 98}
    doc["ceilings"] = [far, kafka]
    row = section_rows(render(doc), "Beside the broker's own ceiling")[0]
    assert (row["its bytes/msg"], row["share"]) == ("5,021", "10%")
    assert "50%" in render(doc)  # produce: 40,000 of 80,000
    doc["ceilings"] = [far]
    assert "## Beside the broker's own ceiling" not in render(doc)


def test_raw_sizes_partitions_and_in_flight_limits_are_cases_of_their_own():
    """Two raw payload sizes, or two partition counts, are two cases, not one median."""
    from queuebench.report.cases import cases_of, row_name

    configs = [replace(config("throughput", "confluent-kafka+kafka"), **change)
               for change in ({"payload": "50 B raw"}, {"payload": "5000 B raw"},
                              {"partitions": 4}, {"in_flight": 16})]
    results = [result(c, m=measurements(consume=10.0)) for c in configs]
    cases = cases_of(results, "throughput")
    assert len(cases) == 4
    assert [row_name(case.first) for case in cases] == [
        "confluent-kafka+kafka 50 B raw", "confluent-kafka+kafka 5000 B raw",
        "confluent-kafka+kafka 4 partitions", "confluent-kafka+kafka in flight 16"]


def test_the_lowest_latency_pair_is_not_called_tied_with_itself_in_another_format():
    def case(pair, fmt, p99):
        m = measurements(consume=100.0, time_to_consume_sec=2.0)
        m["latency_ms"] = {**m["latency_ms"], "p99": p99}
        return result(config("throughput", pair, fmt=fmt), m=m)

    text = answer_section([case("a", "protobuf", 100.0), case("a", "json", 105.0),
                           case("b", "json", 104.0), case("c", "json", 300.0)])
    latency = next(line for line in text.splitlines() if "Latency matters most" in line)
    assert latency.startswith("- **Latency matters most:** a (tied: b): p99 100.00 ms")
