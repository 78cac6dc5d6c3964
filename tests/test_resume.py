"""A run that stopped goes on where it stopped (`queuebench run ... --resume FOLDER`): a night's
`make scenarios` cut off by a reboot keeps the hours it measured."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from queuebench import cli
from queuebench.engine import environment, runner
from queuebench.engine.results import Result, RunFolder, load_run
from queuebench.errors import UsageError
from queuebench.report import render
from tests.test_report import INFO, config, measurements
from tests.test_stub import stub_url

MANIFEST = {"host": "h", "commit": "c1"}


def folder_cut_off_midway(tmp_path) -> RunFolder:
    """A run whose first step finished and whose second was killed after one result."""
    folder = RunFolder(tmp_path, "t", command="queuebench run x", manifest=MANIFEST, plan="p1")
    folder.add(Result(config("throughput", "a"), "ok", INFO, measurements(consume=1.0)))
    folder.step_done({"calibration": 120.0})
    folder.add(Result(config("throughput", "b"), "ok", INFO, measurements(consume=1.0)))
    folder.close()  # as the killed process would
    return folder


def test_a_resumed_run_keeps_the_steps_done_and_drops_the_one_cut_off(tmp_path):
    path = folder_cut_off_midway(tmp_path).path
    again = RunFolder.reopen(path, plan="p1", manifest={
        **MANIFEST, "host": "h2", "os": "Linux-x", "json_round_trips_per_sec": 99000})
    saved = load_run(path)
    assert [r["config"]["pair"] for r in saved["results"]] == ["a"]
    assert saved["run"]["progress"]["drain_rates"] == {"calibration": 120.0}
    assert [again.progress["steps"], len(again.kept_results())] == [1, 1]
    (resumed,) = saved["run"]["resumed"]
    assert (resumed["host"], resumed["os"], resumed["json_round_trips_per_sec"]) == (
        "h2", "Linux-x", 99000)
    assert "commit" not in resumed  # the same as the run's, or it would not resume
    again.finish(render)
    assert "; resumed " in (path / "report.md").read_text().splitlines()[2]


@pytest.mark.parametrize("plan, manifest, says", [
    ("p2", MANIFEST, "resume it with the command it ran: queuebench run x --resume"),
    ("p1", {**MANIFEST, "commit": "c2"}, "ran at commit c1, and this is c2"),
])
def test_a_run_resumes_only_as_the_same_plan_from_the_same_code(tmp_path, plan, manifest, says):
    path = folder_cut_off_midway(tmp_path).path
    with pytest.raises(UsageError, match=says):
        RunFolder.reopen(path, plan=plan, manifest=manifest)
    assert len(load_run(path)["results"]) == 2  # untouched


def test_a_run_resumes_after_a_commit_of_reports_only(tmp_path, monkeypatch):
    """`make scenarios` runs for longer than a machine may live: a group's results are committed
    midway, and the next machine goes on at that commit, which differs only in reports/."""
    repo = tmp_path / "repo"
    (repo / "queuebench").mkdir(parents=True)

    def commit(path: str, text: str) -> str:
        (repo / path).parent.mkdir(exist_ok=True)
        (repo / path).write_text(text)
        for args in (["add", path], ["-c", "user.name=t", "-c", "user.email=t@t", "commit",
                                     "-qm", path], ["rev-parse", "HEAD"]):
            done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                                  check=True)
        return done.stdout.strip()

    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    ran_at = commit("queuebench/code.py", "x = 1")
    monkeypatch.setattr(environment, "SOURCE", repo / "queuebench")
    path = RunFolder(tmp_path, "t", command="queuebench run x", manifest={"commit": ran_at},
                     plan="p1").path
    results_at = commit("reports/SCENARIOS.md", "results")
    resumed = RunFolder.reopen(path, plan="p1", manifest={"commit": results_at})
    resumed.close()
    assert resumed.document["run"]["resumed"][0]["commit"] == results_at
    changed_at = commit("queuebench/code.py", "x = 2")
    with pytest.raises(UsageError, match=f"ran at commit {ran_at}, and this is {changed_at}"):
        RunFolder.reopen(path, plan="p1", manifest={"commit": changed_at})


def test_a_run_still_running_is_not_resumed_until_its_process_is_gone(tmp_path):
    """Two processes running into one folder would truncate each other's results: the second is
    told which process holds it, and once that one is killed (no chance to clean up), it goes."""
    path = folder_cut_off_midway(tmp_path).path
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from pathlib import Path; from queuebench.engine.results import RunFolder; "
        f"run = RunFolder.reopen(Path({str(path)!r}), plan='p1', manifest={MANIFEST!r}); "
        "print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        with pytest.raises(UsageError, match=f"is being run by another queuebench "
                                             f"\\(pid {holder.pid}\\); wait for it to end"):
            RunFolder.reopen(path, plan="p1", manifest=MANIFEST)
    finally:
        holder.kill()
        holder.wait()
    assert len(RunFolder.reopen(path, plan="p1", manifest=MANIFEST).document["run"]["resumed"]
               ) == 2


def test_a_run_written_before_progress_was_kept_says_so_unless_complete(tmp_path):
    path = folder_cut_off_midway(tmp_path).path
    document = json.loads((path / "results.json").read_text())
    del document["run"]["progress"]
    (path / "results.json").write_text(json.dumps(document))
    with pytest.raises(UsageError, match="written before queuebench kept a run's progress"):
        RunFolder.reopen(path, plan="p1", manifest=MANIFEST)
    document["run"]["complete"] = True  # nothing left to run: `make scenarios RESUME=1` skips it
    (path / "results.json").write_text(json.dumps(document))
    assert len(RunFolder.reopen(path, plan="p2", manifest={}).document["results"]) == 2


def test_a_run_interrupted_midway_goes_on_without_measuring_again(tmp_path, monkeypatch, capsys):
    """Stub runs at two fractions of a calibrated drain rate, interrupted after the second
    step's row: the resumed run measures that step again, and only it: one calibration, one
    row per step, exit 0; resuming the complete run measures nothing."""
    experiment = tmp_path / "paced.yaml"
    experiment.write_text("messages: 20\nrate: {of_max: [0.5, 0.25]}\n")
    args = ["run", str(experiment), "--pair", stub_url(tmp_path), "--reports-dir",
            str(tmp_path / "reports")]
    steps = []
    measure = runner.PlanRun.run

    def counted(state, cell, *rest):
        steps.append(cell.rate.fraction)
        result = measure(state, cell, *rest)
        if steps == [0.5, 0.25]:
            raise KeyboardInterrupt  # after the step's row, before the step is done
        return result

    monkeypatch.setattr(runner.PlanRun, "run", counted)
    assert cli.main(args) == 130
    (folder,) = (tmp_path / "reports").glob("*Z-paced")
    assert len(load_run(folder)["results"]) == 3  # the calibration and both paced rows
    (cut_off,) = (folder / "experiments").glob("002-*")
    (cut_off / "stale").write_text("")

    steps.clear()
    assert cli.main([*args, "--resume", str(folder)]) == 0
    assert steps == [0.25]
    document = load_run(folder)
    rates = [r["config"]["rate"] for r in document["results"]]
    assert rates[0] is None and len(rates) == 3  # calibrated once, the cut-off row replaced
    assert document["run"]["complete"] and len(document["run"]["resumed"]) == 1
    numbered = sorted(p.name[:3] for p in (folder / "experiments").iterdir())
    assert numbered == ["000", "001", "002"]  # the remeasured row took the dropped row's number
    assert not (cut_off / "stale").exists()  # and its files are all the new attempt's

    steps.clear()
    capsys.readouterr()
    assert cli.main([*args, "--resume", str(folder)]) == 0
    assert steps == []
    assert "is complete; nothing left to run" in capsys.readouterr().err
