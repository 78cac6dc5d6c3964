"""Bad input gets one line and a non-zero exit, before anything is built, connected or written.

Each case here once gave a traceback, a wrong success or an empty run folder.
"""

from __future__ import annotations

import json

import pytest

from tests.test_cli import one_line_error, run_cli

RESULTS = {"schema": 1, "run": {"name": "good", "command": "c", "started_at": "t",
                                "finished_at": "t", "complete": True},
           "environment": {"host": "h"}, "payload_sizes": [], "results": []}


def run_in(tmp_path, *args: str):
    """`queuebench run ...` with its reports under tmp_path/reports."""
    return run_cli("run", *args, "--reports-dir", str(tmp_path / "reports"))


def no_run_folder(tmp_path) -> bool:
    reports = tmp_path / "reports"
    return not reports.exists() or not any(reports.iterdir())


@pytest.mark.parametrize(("args", "says"), [
    (["--work-ms", "nan"], "--work-ms: 'nan' is not a finite number"),
    (["--wait", "nan"], "--wait: 'nan' is not a finite number"),
    (["--wait", "inf"], "--wait: 'inf' is not a finite number"),
    (["--deadline", "0"], "--deadline: '0' is not more than 0"),
    (["--name", "x/y"], "--name: 'x/y' may hold only"),
    (["--name", ".."], "--name: '..' may hold only"),
    (["--variant", "nope"], "huey+sqlite has no variant 'nope'"),
    (["--pair", "sqlalchemy+sqlite", "--pair", "sqlalchemy+sqlite:///other.sqlite"],
     "sqlalchemy+sqlite is given twice with different URLs"),
    (["--stock-db", "notaurl"], "malformed stock database URL 'notaurl'"),
    (["--stock-db", "sqlite:///missing/folder/stock.sqlite"],
     "stock database folder missing/folder does not exist"),
])
def test_usage_errors_exit_2_before_a_payload_or_a_folder(tmp_path, args, says):
    """Each mistake is one line naming it, exit 2; no payload built, no run folder left."""
    proc = run_in(tmp_path, "reliability", *args)
    assert proc.returncode == 2
    assert says in one_line_error(proc)
    assert "built" not in proc.stderr
    assert no_run_folder(tmp_path)


def test_stock_db_that_is_not_a_database_is_one_line(tmp_path):
    """A --stock-db file that is not SQLite is refused by `run` and `sizes` alike."""
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("just some text, long enough to be read as a header " * 20)
    for command in (["run", "throughput", "--reports-dir", str(tmp_path / "reports")],
                    ["sizes"]):
        proc = run_cli(*command, "--stock-db", f"sqlite:///{not_a_db}")
        assert proc.returncode == 2, proc.stderr
        assert "is not usable (file is not a database)" in one_line_error(proc)
        assert proc.stdout == ""
    assert no_run_folder(tmp_path)


@pytest.mark.parametrize("url", ["notaurl", "postgresql+psycopg://u:pw@127.0.0.1:port/db",
                                 "sqlite:///missing/folder/stock.sqlite"])
def test_sizes_with_a_bad_stock_db_is_one_line(tmp_path, url):
    """`sizes --stock-db` with a malformed URL or a missing folder: one line, exit 2."""
    proc = run_cli("sizes", "--stock-db", url)
    assert proc.returncode == 2
    assert "stock database" in one_line_error(proc)
    assert ":pw@" not in proc.stderr


def test_unreachable_stock_db_is_a_failure_without_its_password(tmp_path):
    """A stock database that refuses the connection: exit 1, the password masked."""
    proc = run_cli("sizes", "--stock-db", "postgresql+psycopg://u:S3cret@127.0.0.1:1/db")
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "cannot open the stock database postgresql+psycopg://u:***@127.0.0.1:1/db" in line
    assert "S3cret" not in proc.stderr


def test_reachable_only_with_every_broker_down_fails(tmp_path):
    """Skipping every pair is not an empty "complete" run: exit 1, one error line, no folder."""
    proc = run_in(tmp_path, "throughput", "--reachable-only",
                  "--pair", "huey+redis://:S3cret@127.0.0.1:1/0")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("skipping huey+redis")
    assert lines[-1].startswith("queuebench: error: no broker of the pairs asked for answers")
    assert "Traceback" not in proc.stderr and "S3cret" not in proc.stderr
    assert no_run_folder(tmp_path)


def test_a_pair_given_by_name_and_by_url_runs_once(tmp_path):
    """`--pair P --pair <P's default URL>` is one pair, one row."""
    proc = run_in(tmp_path, "throughput", "--messages", "2", "--repeats", "1",
                  "--pair", "sqlalchemy+sqlite",
                  "--pair", "sqlalchemy+sqlite:///.state/queues/sqlqueue.sqlite")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())
    assert [r["config"]["pair"] for r in results["results"]] == ["sqlalchemy+sqlite"]


def test_a_row_cut_short_by_its_deadline_is_no_loss_and_exits_3(tmp_path):
    """`--deadline 1` on a pair that never loses: the row is incomplete, the answer names no
    loss, and the exit code is 3 (the README says so)."""
    proc = run_in(tmp_path, "reliability", "--pair", "sqlalchemy+sqlite", "--stop", "kill",
                  "--messages", "60", "--work-ms", "100", "--wait", "0", "--deadline", "1")
    assert proc.returncode == 3, proc.stderr
    report = (tmp_path / "reports" / "latest" / "report.md").read_text()
    answer = report.split("## Reliability")[0]
    assert "Loses messages" not in answer and "Most resilient" not in answer
    assert "Incomplete" in answer
    assert "incomplete (deadline)" in report


@pytest.mark.parametrize(("content", "says"), [
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "(it is not text)"),
    (b"", "(it is empty)"),
    (b'{"schema": 1}', "run, environment, payload_sizes missing or malformed"),
    (json.dumps(RESULTS).encode()[:-20], "is not valid JSON"),
    (json.dumps({**RESULTS, "results": [{"config": {}}]}).encode(),
     "results[0].status"),
])
def test_report_on_a_broken_results_file_is_one_line(tmp_path, content, says):
    """Binary, empty, skeletal or truncated results.json: exit 2, one line naming the file."""
    (tmp_path / "results.json").write_bytes(content)
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert str(tmp_path / "results.json") in line and says in line


def test_one_broken_run_does_not_stop_the_comparison_of_the_others(tmp_path):
    """`report` over a reports folder skips a broken run with a warning and merges the rest."""
    good = tmp_path / "20261201T000000Z-good"
    broken = tmp_path / "20261201T000001Z-broken"
    for folder in (good, broken):
        folder.mkdir()
    (good / "results.json").write_text(json.dumps(RESULTS))
    (broken / "results.json").write_bytes(b"\x00\x01binary")
    proc = run_cli("report", "--reports-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f"queuebench: warning: skipping {broken}")
    merged = json.loads((tmp_path / "comparison" / "results.json").read_text())
    assert merged["run"]["merged_from"] == ["good"]
