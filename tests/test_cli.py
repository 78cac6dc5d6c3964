"""Bad input gets one clear line and a non-zero exit: 2 for usage errors, 1 for failures."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from queuebench.cli import main
from tests.harness import wait_for


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "queuebench", *args], capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("queuebench: error: ")
    return lines[0]


def test_unknown_pair_lists_known_pairs_and_suggests_one():
    """A misspelt pair exits 2 with a "did you mean" and the list of known pairs."""
    proc = run_cli("run", "throughput", "--pair", "huey+sqlit")
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "did you mean huey+sqlite?" in line
    assert "sqlalchemy+sqlite" in line


def test_malformed_url_is_a_usage_error():
    """A pair URL without `://` exits 2 and shows the expected form."""
    proc = run_cli("run", "throughput", "--pair", "huey+sqlite:/tmp/x")
    assert proc.returncode == 2
    assert "expected SCHEME://ADDRESS" in one_line_error(proc)


def test_bad_port_is_a_usage_error():
    """A non-numeric port is caught before anything connects."""
    proc = run_cli("run", "throughput", "--pair", "celery+sqlite://host:port/x")
    assert proc.returncode == 2
    assert "malformed pair URL" in one_line_error(proc)


@pytest.mark.parametrize("option", ["--messages", "--records"])
@pytest.mark.parametrize("value", ["0", "-3", "ten"])
def test_counts_must_be_positive_numbers(option, value):
    """N and R that are not positive whole numbers exit 2 and name the option."""
    proc = run_cli("run", "throughput", option, value)
    assert proc.returncode == 2
    assert option in one_line_error(proc)


@pytest.mark.parametrize("url", ["sqlalchemy+postgres://u:p@127.0.0.1:1/db",
                                 "celery+redis://127.0.0.1:1/0"])
def test_refused_broker_fails_fast_naming_the_address(tmp_path, url):
    """A broker port nobody listens on ends the run at once, exit 1, naming the address."""
    proc = run_cli("run", "throughput", "--pair", url, "--reports-dir", str(tmp_path))
    assert proc.returncode == 1
    line = one_line_error(proc)
    address = "127.0.0.1:1"  # exactly: not 127.0.0.1:10, nor a "1" anywhere in the line
    assert address in line and not line.partition(address)[2][:1].isdigit(), line


def test_silent_broker_times_out_within_ten_seconds(tmp_path):
    """A broker that accepts the connection but never answers is given up on in ~10 s: the
    run takes at most 13 s longer than one refused at once (the same start-up, on a machine
    however busy; an absolute bound failed at 17.8 s with the load average at 50)."""
    def timed_run(port: int) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        proc = run_cli("run", "throughput", "--pair",
                       f"sqlalchemy+postgres://u:p@127.0.0.1:{port}/db",
                       "--reports-dir", str(tmp_path))
        return proc, time.monotonic() - started

    _, refused_sec = timed_run(1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        proc, silent_sec = timed_run(port)
    assert proc.returncode == 1
    assert f"127.0.0.1:{port}" in one_line_error(proc)
    assert silent_sec - refused_sec < 13


def test_unwritable_reports_folder_is_one_line(tmp_path):
    """A reports folder that cannot be made exits 1 and says how to choose another."""
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    proc = run_cli("run", "throughput", "--pair", "sqlalchemy+sqlite", "--messages", "1",
                   "--reports-dir", str(not_a_folder / "reports"))
    assert proc.returncode == 1
    assert "--reports-dir" in one_line_error(proc)


def test_report_on_a_folder_without_results(tmp_path):
    """`report` on a folder with no results.json exits 2 and points at reports/latest."""
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2
    assert "reports/latest" in one_line_error(proc)


def test_report_on_broken_results(tmp_path):
    """A results.json that is not JSON exits 2 naming the file and the line."""
    (tmp_path / "results.json").write_text('{"schema": 1,')
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2
    assert "results.json is not valid JSON" in one_line_error(proc)


def test_report_rebuilds_from_results(tmp_path, capsys):
    """`report DIR` renders report.md from results.json alone and prints its path."""
    document = {"schema": 1, "run": {"name": "x", "command": "c", "started_at": "t",
                                      "finished_at": None, "complete": False},
                "environment": {"host": "h"}, "payload_sizes": [], "results": []}
    (tmp_path / "results.json").write_text(json.dumps(document))
    assert main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.md")
    assert "INCOMPLETE" in (tmp_path / "report.md").read_text()


def test_pairs_lists_every_pair_with_its_state(capsys, monkeypatch):
    """`pairs` prints one line per registered pair with its state, embedded ones answering.

    A unit test talks to no broker: only the embedded pairs are probed, the others are stubbed
    as down.
    """
    from queuebench import adapters
    from queuebench.errors import BrokerUnreachable
    from queuebench.redact import redact

    def down(self, timeout):
        raise BrokerUnreachable(f"{self.scheme}: not probed in unit tests")

    embedded = adapters.GROUPS["embedded"]
    for scheme, entry in adapters.PAIRS.items():
        if scheme not in embedded:
            monkeypatch.setattr(adapters.adapter_class(entry), "check_reachable", down)
    assert main(["pairs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(adapters.PAIRS)
    for line in lines:
        scheme, url = line.split()[:2]
        assert url == redact(adapters.PAIRS[scheme].default_url)  # no password, even "guest"
        assert line.endswith("broker answers" if scheme in embedded else "not probed in unit "
                             "tests"), line


def test_sizes_prints_every_format_for_the_seed_counts(capsys):
    """`sizes` prints bytes per format for 100, 5,000 and 10,000 records."""
    assert main(["sizes"]) == 0
    out = capsys.readouterr().out
    for count in ("100", "5,000", "10,000"):
        for fmt in ("json", "protobuf", "pickle"):
            assert any(line.split()[:2] == [count, fmt] for line in out.splitlines())


def test_report_without_any_run_is_one_line(tmp_path):
    """`report` with no folder and no finished run under --reports-dir exits 2 and says so."""
    proc = run_cli("report", "--reports-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "no complete run" in one_line_error(proc)


def test_output_into_a_closed_pipe_is_no_traceback():
    """`queuebench pairs | head -1` ends quietly when the reader stops reading.

    The reader is gone before the first write, so that the pipe surely breaks (`head` would
    often read the whole output, written in one go at exit), and the pairs on a server are
    stubbed as down, so that no broker is probed.
    """
    import os

    pairs_without_brokers = """if True:
        import sys
        from queuebench import adapters, cli
        from queuebench.errors import BrokerUnreachable

        def down(self, timeout):
            raise BrokerUnreachable(f"{self.scheme}: not probed in unit tests")

        for scheme, entry in adapters.PAIRS.items():
            if scheme not in adapters.GROUPS["embedded"]:
                adapters.adapter_class(entry).check_reachable = down
        sys.exit(cli.main(["pairs"]))
    """
    reader, writer = os.pipe()
    os.close(reader)
    try:
        proc = subprocess.run([sys.executable, "-c", pairs_without_brokers], stdout=writer,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(writer)
    assert proc.returncode == 141, proc.stderr  # 128 + SIGPIPE, as a shell reports it
    assert proc.stderr == ""  # no traceback, no "Exception ignored" at exit


def processes_with_environ(text: str) -> list[int]:
    """Live processes whose environment mentions `text` (the consumers of one run)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # it exited while we looked
    return found


def test_sigterm_ends_a_run_like_ctrl_c_and_stops_its_consumer(tmp_path):
    """`kill` on a run (what `timeout` and CI send) stops its consumer too, exit 130."""
    run = subprocess.Popen(
        [sys.executable, "-m", "queuebench", "run", "reliability", "--pair",
         f"sqlalchemy+sqlite:///{tmp_path}/queue.sqlite", "--messages", "200", "--work-ms", "100",
         "--reports-dir", str(tmp_path)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: processes_with_environ(str(tmp_path)), "the run's consumer to start",
                 timeout=60)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 130
    assert stderr.strip().splitlines()[-1] == "queuebench: interrupted"
    assert processes_with_environ(str(tmp_path)) == []
