"""The harness cleans up after itself, and unit tests stay off the brokers.

A run that dies without its cleanup (SIGKILL, a closed terminal) takes its consumers with it:
each consumer's watchdog kills the consumer's session when the run is gone. And a test not
marked `broker` that reaches for a broker port is failed by the guard in conftest.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from queuebench.engine.consumer import ConsumerProcess
from queuebench.engine.watchdog import MARK_VARIABLE, marked_family, session_members
from queuebench.errors import ConsumerFailed
from tests.conftest import BLOCKED_CONNECTIONS, BrokerConnectionBlocked
from tests.harness import wait_for

pytest_plugins = ["pytester"]


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose environment or command line mentions `text` (one run's processes).

    A zombie has neither any more, so it is not counted: it runs nothing.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(text.encode() in (entry / name).read_bytes() for name in ("environ", "cmdline")):
                found.append(int(entry.name))
        except OSError:
            continue  # it exited while we looked
    return found


def command_lines(pids: list[int]) -> list[str]:
    """What each of `pids` runs, as `ps` shows it (those gone meanwhile left out)."""
    lines = []
    for pid in pids:
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                         .decode(errors="replace").strip())
    return lines


@contextlib.contextmanager
def huey_run_at_work(tmp_path: Path, *options: str, timeout: float = 60
                     ) -> Iterator[subprocess.Popen[bytes]]:
    """A reliability run of huey+sqlite (no server needed), with `options`, whose consumer is
    at work. Every process of the run has `tmp_path` in its environment (QUEUEBENCH_TEST_RUN),
    inherited, so that processes_mentioning finds them all.

    Its consumer is slow enough (200 messages, 100 ms each) to outlive any test; teardown kills
    whatever of the run is left, so a failing test leaves nothing behind.
    """
    with (tmp_path / "stderr").open("wb") as stderr:
        run = subprocess.Popen(
            [sys.executable, "-m", "queuebench", "run", "reliability", "--pair",
             f"huey+sqlite:///{tmp_path}/huey.sqlite", "--messages", "200", "--work-ms", "100",
             "--wait", "0", "--reports-dir", str(tmp_path), *options],
            stdout=subprocess.DEVNULL, stderr=stderr,
            env={**os.environ, "QUEUEBENCH_TEST_RUN": str(tmp_path)},
            # A terminal's SIGHUP finds the default action, whatever the one running pytest
            # ignores.
            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    try:
        # At work, not just started: the consumer has noted a message, so the run is well past
        # starting it (and whatever it starts alongside).
        def at_work() -> bool:
            if run.poll() is not None:
                pytest.fail(f"the run exited with {run.returncode}: "
                            f"{(tmp_path / 'stderr').read_text()[-2000:]}")
            return any(path.stat().st_size for path in tmp_path.rglob("receipts-*.log"))

        wait_for(at_work, "the run's consumer to take a message", timeout=timeout)
        yield run
    finally:
        run.kill()
        run.wait()
        for pid in processes_mentioning(str(tmp_path)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def huey_run(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with huey_run_at_work(tmp_path) as run:
        yield run


def test_a_killed_run_takes_its_consumer_with_it(huey_run, tmp_path):
    """SIGKILL on a run (no cleanup can run) still ends its consumer, within seconds."""
    assert processes_mentioning(str(tmp_path))  # the consumer, before
    huey_run.kill()
    huey_run.wait()
    wait_for(lambda: not processes_mentioning(str(tmp_path)),
             "the killed run's consumer to be gone", timeout=10, poll=0.1)


def test_a_hung_up_run_takes_its_consumer_with_it(huey_run, tmp_path):
    """SIGHUP (its terminal closed) ends a run and its consumer, within seconds."""
    huey_run.send_signal(signal.SIGHUP)
    # Killed by the signal, or (if the CLI maps SIGHUP to Ctrl-C) interrupted after its cleanup.
    assert huey_run.wait(timeout=10) in (-signal.SIGHUP, 130)
    wait_for(lambda: not processes_mentioning(str(tmp_path)),
             "the hung-up run's consumer to be gone", timeout=10, poll=0.1)


def start_watchdog(session_id: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "queuebench.engine.watchdog",
                             str(session_id)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_the_watchdog_kills_the_whole_session_when_the_run_is_gone():
    """EOF on its stdin (the run's end of the pipe closed) kills the worker and its children."""
    # A worker with a child, as RQ's work horse or a prefork pool: both must go.
    worker = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60"], start_new_session=True)
    watchdog = start_watchdog(worker.pid)
    try:
        wait_for(lambda: len(session_members(worker.pid)) == 3, "the worker's children")
        watchdog.stdin.close()  # what the kernel does when the run dies
        assert watchdog.wait(timeout=5) == 0
        assert worker.wait(timeout=5) == -signal.SIGKILL
        assert session_members(worker.pid) == []
        assert b"the run is gone" in watchdog.stdout.read()
    finally:
        for pid in session_members(worker.pid):
            os.kill(pid, signal.SIGKILL)
        worker.kill()
        worker.wait()
        watchdog.kill()
        watchdog.wait()
        watchdog.stdout.close()


def test_the_watchdog_exits_with_its_session():
    """A watchdog whose session ended exits by itself, killing nothing."""
    worker = subprocess.Popen(["sleep", "60"], start_new_session=True)
    watchdog = start_watchdog(worker.pid)
    try:
        worker.kill()
        worker.wait()
        assert watchdog.wait(timeout=5) == 0
        assert watchdog.stdout.read() == b""
    finally:
        watchdog.kill()
        watchdog.wait()
        watchdog.stdin.close()
        watchdog.stdout.close()


@contextlib.contextmanager
def marked_parent_of_unmarked_child(tmp_path: Path, mark: str) -> Iterator[tuple[int, int]]:
    """A process carrying `mark` (a raylet) whose child's environment does not show it (an
    agent that renamed itself over it): (parent, child); both killed at the end."""
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; "
         "child = subprocess.Popen(['sleep', '60'], env={}); "
         f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)"],
        env={**os.environ, MARK_VARIABLE: mark}, start_new_session=True)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the child's pid")
        yield parent.pid, int(pid_file.read_text())
    finally:
        for pid in session_members(parent.pid):  # the child too: it is in the parent's session
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_cluster_watchdog_kills_the_unmarked_children_of_the_marked(tmp_path):
    """At EOF the marked process and its child that shows no mark both die. Before, only
    processes showing the mark did: Ray's agents outlived a SIGKILLed run 1 time in 2."""
    mark = uuid.uuid4().hex
    with marked_parent_of_unmarked_child(tmp_path, mark) as (parent, child):
        watchdog = subprocess.Popen([sys.executable, "-m", "queuebench.engine.watchdog",
                                     "--marked", mark], stdin=subprocess.PIPE)
        watchdog.stdin.close()  # the run is gone
        assert watchdog.wait(timeout=30) == 0
        assert not alive(parent) and not alive(child)


def test_a_child_stays_family_once_its_marked_parent_is_gone(tmp_path):
    """Ray's shutdown kills a raylet before its agents: an agent then is init's and shows no
    mark, but was noted as family while its parent lived, so the watchdog still kills it."""
    mark = uuid.uuid4().hex
    with marked_parent_of_unmarked_child(tmp_path, mark) as (parent, child):
        known = marked_family(mark, {}, spare={os.getpid()})
        assert {parent, child} <= set(known)
        os.kill(parent, signal.SIGKILL)
        wait_for(lambda: not alive(parent), "the parent's end")
        assert set(marked_family(mark, {}, spare={os.getpid()})).isdisjoint({parent, child})
        assert child in marked_family(mark, known, spare={os.getpid()})


class SleepAdapter:
    """Just enough of an Adapter for ConsumerProcess: a worker that sleeps, with a password in
    its command line."""

    scheme = "sleep"
    url = "sleep://user:s3cret@127.0.0.1:1/0"
    queue = "queue"
    variant = SimpleNamespace(name="default")
    graceful_stop_signal = signal.SIGTERM

    def consumer_argv(self, concurrency: int = 1) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(60)", self.url]

    def consumer_env(self) -> dict[str, str]:
        return {"SLEEP_PASSWORD": "s3cret"}


class DeafAdapter(SleepAdapter):
    """A worker that ignores SIGTERM, then says where it is stuck (in words its command line
    does not hold, so that seeing them means the signal is ignored by now)."""

    def consumer_argv(self, concurrency: int = 1) -> list[str]:
        return [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                "signal.SIG_IGN); print('stuck in job', 3 + 4, flush=True); time.sleep(60)"]


def test_a_worker_deaf_to_its_stop_signal_is_killed_and_the_error_quotes_its_log(tmp_path):
    """Why it did not stop is in its log: the error carries the last lines, or a failure on a
    CI machine, where the log is gone, leaves nothing to go on."""
    consumer = ConsumerProcess(DeafAdapter(), ledger_dir=tmp_path / "ledger", work_ms=0,
                               log_path=tmp_path / "consumer.log")
    consumer.start()
    try:
        wait_for(lambda: "stuck in job 7" in (tmp_path / "consumer.log").read_text(), "its line")
        with pytest.raises(ConsumerFailed, match=r"ignored SIGTERM until it was killed; "
                                                 r"last log lines: .*stuck in job 7"):
            consumer.stop(timeout=1)
        assert processes_mentioning(str(tmp_path)) == []
    finally:
        consumer.ensure_stopped()


def test_stop_kill_and_restart_leave_no_watchdog_behind(tmp_path):
    """Each start has a watchdog beside the worker; every way the worker ends, ends it too. The
    worker gets the adapter's environment, and the log's header its command line without the
    password."""
    consumer = ConsumerProcess(SleepAdapter(), ledger_dir=tmp_path / "ledger", work_ms=0,
                               log_path=tmp_path / "consumer.log")
    try:
        for end in (consumer.stop, consumer.kill, consumer.ensure_stopped):
            consumer.start()
            assert len(processes_mentioning(str(tmp_path))) == 2  # the worker, its watchdog
            worker_env = Path(f"/proc/{consumer._require_process().pid}/environ").read_bytes()
            assert b"\0SLEEP_PASSWORD=s3cret\0" in worker_env
            end()
            assert processes_mentioning(str(tmp_path)) == []
        consumer.start()
        worker = consumer._require_process()
        worker.kill()  # it dies on its own, as far as the consumer can tell
        worker.wait()
        with pytest.raises(ConsumerFailed):
            consumer.check_alive()
        assert processes_mentioning(str(tmp_path)) == []
    finally:
        consumer.ensure_stopped()
    log = (tmp_path / "consumer.log").read_text()
    assert "--- start 4: " in log and "sleep://user:***@127.0.0.1:1/0" in log
    assert "s3cret" not in log


def test_an_unmarked_test_cannot_reach_a_broker_port(request):
    """The guard refuses a broker port on the loopback, by every route, and records each try."""
    with pytest.raises(BrokerConnectionBlocked, match="6379"):
        socket.create_connection(("127.0.0.1", 6379), timeout=1)
    with socket.socket(socket.AF_INET6) as sock, pytest.raises(BrokerConnectionBlocked,
                                                                match="5432"):
        sock.connect(("::1", 5432))
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", 9092)) == errno.ECONNREFUSED
    tries = request.node.stash[BLOCKED_CONNECTIONS]
    assert [address[:2] for address in tries] == [("127.0.0.1", 6379), ("::1", 5432),
                                                  ("127.0.0.1", 9092)]
    tries.clear()  # made on purpose: the guard would fail this test after its call


def test_the_guard_fails_a_test_even_when_the_refusal_is_swallowed(pytester):
    """A client that swallows the refusal (reporting "broker down") still fails its test; a port
    that is not a broker's is left alone."""
    pytester.makeconftest("from tests.conftest import _no_broker_unless_marked, "
                          "pytest_runtest_call  # noqa: F401\n")
    pytester.makepyfile("""
        import socket

        def probe(port):
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
            except OSError:
                return "down"

        def test_swallows():
            assert probe(6379) == "down"

        def test_other_port():
            with socket.socket() as listener:
                listener.bind(("127.0.0.1", 0))
                listener.listen()
                socket.create_connection(listener.getsockname(), timeout=1).close()
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_swallows*not marked broker*6379*"])


def test_a_sigterm_while_a_consumer_starts_is_raised_once_the_run_knows_the_consumer(
        tmp_path, monkeypatch):
    """The SIGTERM lands inside subprocess.Popen, after the fork (as it did when the test
    below sent it on seeing the consumer): raised there, it left a consumer the run never knew,
    alive long after the run. Now it is raised once the consumer and its watchdog are known, so
    the cleanup stops them."""
    from queuebench.engine import consumer as consumer_module
    from queuebench.engine.interrupt import Interrupt

    real_popen = subprocess.Popen

    def popen_interrupted_after_the_fork(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # handled before Popen would have returned
        return process

    monkeypatch.setattr(consumer_module.subprocess, "Popen", popen_interrupted_after_the_fork)
    previous = signal.signal(signal.SIGTERM, Interrupt.handle)
    consumer = ConsumerProcess(SleepAdapter(), ledger_dir=tmp_path / "ledger", work_ms=0,
                               log_path=tmp_path / "consumer.log")
    try:
        with pytest.raises(KeyboardInterrupt):
            consumer.start()
        assert consumer.running  # known to the run, so its cleanup reaches it
        consumer.ensure_stopped()
        assert processes_mentioning(str(tmp_path)) == []
    finally:
        signal.signal(signal.SIGTERM, previous)
        Interrupt.received = False  # this process goes on to run other tests
        consumer.ensure_stopped()


# `queuebench run` over the stub pair whose prepare() is a library that catches the
# KeyboardInterrupt raised while the run is inside it (it notes when it is, then sleeps).
SWALLOWING_RUN = """
import sys, time
from pathlib import Path
from queuebench import cli
from queuebench.adapters.stub import StubAdapter

marker = Path(sys.argv[1])
honest = StubAdapter.prepare

def prepare(self):
    marker.touch()
    try:
        time.sleep(2)
    except KeyboardInterrupt:
        pass
    honest(self)

StubAdapter.prepare = prepare
sys.exit(cli.main(sys.argv[2:]))
"""


def test_a_sigterm_a_library_swallowed_still_ends_the_run(tmp_path):
    """The SIGTERM lands inside a library call that catches the KeyboardInterrupt; the run
    ends at its next wait all the same, as interrupted, instead of going on through its six
    repeats (it went on before)."""
    marker = tmp_path / "preparing"
    run = subprocess.Popen(
        [sys.executable, "-c", SWALLOWING_RUN, str(marker), "run", "throughput", "--pair",
         f"stub+dir:///{tmp_path / 'queues'}", "--reports-dir", str(tmp_path),
         "--set", "messages=10", "--set", "repeats=6"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker.exists, "the run to be inside prepare()", timeout=60, poll=0.01)
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=8) == 130, run.stderr.read()
        assert run.stderr.read().splitlines()[-1] == "queuebench: interrupted"
    finally:
        run.kill()
        run.wait()
