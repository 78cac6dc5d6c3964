"""RQ's own behaviour, seen through `rq worker` started the way the runner starts it.

The cross-pair contract suite lives elsewhere; these tests pin what is particular to RQ: jobs are
pickled bytes, SIGTERM is a warm shutdown, a SIGKILL mid-job leaves the job in the
StartedJobRegistry until maintenance fails it (or re-enqueues it with Retry), and the stock
forking worker's horse survives a SIGKILL of its worker's process group.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from queuebench.adapters import create
from queuebench.adapters.base import Variant
from queuebench.adapters.rq import JOB_FUNCTION, RQAdapter
from queuebench.adapters.rq_json import JSONSerializer as RQJSONSerializer
from queuebench.engine.ledger import tally
from queuebench.errors import BrokerUnreachable
from queuebench.worker.envelope import unwrap, wrap
from tests.harness import PairRun, wait_for

REDIS_URL = "rq+redis://127.0.0.1:6379/0"
WORK_MS = 300.0
INTO_JOB_SEC = 0.15  # after a receipt, the next job is running (a fork takes about 30 ms)
# Abandoned jobs are noticed 60 s + job_monitoring_interval after the kill, at the next
# maintenance pass (maintenance_interval): 70 s at most with the variants' settings.
ABANDONED_WAIT_SEC = 100.0


class ResultTTLZeroRQAdapter(RQAdapter):
    """The retry variant with `result_ttl=0`, a common setting for jobs nobody reads results of."""

    variants = (Variant("retry", {**RQAdapter.find_variant("retry").settings,
                                  "result_ttl_sec": 0}),)


class RQRun(PairRun):
    """A run on a queue of its own, which it empties when closed."""

    def queued_seqs(self) -> list[int]:
        return [unwrap(job.args[0]).seq for job in self.adapter.rq_queue().get_jobs()]

    def close(self) -> None:
        super().close()
        self.adapter.prepare()  # leaves nothing behind on a shared Redis
        self.adapter.cleanup()


@pytest.fixture
def make_run(pair_runs: Callable[..., PairRun]) -> Callable[..., RQRun]:
    def make(variant: str = "default", work_ms: float = WORK_MS,
             adapter_class: type[RQAdapter] = RQAdapter) -> RQRun:
        adapter = adapter_class(REDIS_URL, queue=f"qbtest-{uuid.uuid4().hex[:12]}",
                                variant=variant)
        adapter.prepare()
        return pair_runs(adapter, work_ms=work_ms, cls=RQRun)

    return make


def test_consumer_is_rq_worker_with_the_recorded_settings() -> None:
    """Each variant runs `rq worker` with the worker class, timings and serializer its settings
    declare; the Redis URL goes in RQ_REDIS_URL, which RQ's CLI reads for `--url`."""
    forking = create(REDIS_URL, queue="q")
    assert forking.consumer_argv()[1:] == ["-m", "rq.cli", "worker", "--worker-class", "rq.Worker",
                                           "--worker-ttl", "20", "--maintenance-interval", "5",
                                           "--job-monitoring-interval", "5", "q"]
    assert forking.consumer_env() == {"RQ_REDIS_URL": "redis://127.0.0.1:6379/0"}
    simple = create(REDIS_URL, queue="q", variant="simple-worker").consumer_argv()
    assert simple[simple.index("--worker-class") + 1] == "rq.SimpleWorker"
    json_argv = create(REDIS_URL, queue="q", variant="json-serializer").consumer_argv()
    assert json_argv[json_argv.index("--serializer") + 1] == \
        "queuebench.adapters.rq_json.JSONSerializer"
    assert json_argv[json_argv.index("--worker-class") + 1] == "rq.Worker"
    assert create(REDIS_URL, queue="q", variant="retry").job_options()["retry"].max == 3
    assert create(REDIS_URL, queue="q").job_options()["retry"] is None


def test_password_goes_to_the_worker_in_its_environment_only() -> None:
    """`ps` shows every local user a command line: the password is in RQ_REDIS_URL instead."""
    adapter = create("rq+redis://:S3cret@127.0.0.1:6379/3", queue="q")
    assert "S3cret" not in " ".join(adapter.consumer_argv())
    assert adapter.consumer_env() == {"RQ_REDIS_URL": "redis://:S3cret@127.0.0.1:6379/3"}


def test_json_serializer_carries_bytes_and_imports_no_handler() -> None:
    """Bytes survive the JSON serializer; importing it (the worker does, before forking) leaves
    the handler to each work horse, as with pickle, so only the serializer differs."""
    script = ("import sys; from queuebench.adapters.rq_json import JSONSerializer as S; "
              "data = ('f', None, [bytes(range(256))], {'k': (1, 'x')}); "
              "assert S.loads(S.dumps(data)) == ['f', None, [bytes(range(256))], {'k': [1, 'x']}]; "
              "assert 'queuebench.worker.handler' not in sys.modules")
    subprocess.run([sys.executable, "-c", script], check=True)
    with pytest.raises(TypeError, match="cannot carry a set"):
        RQJSONSerializer.dumps({1, 2})


def test_unreachable_redis_is_named_within_the_timeout() -> None:
    """A closed port fails fast with the address in the message."""
    adapter = create("rq+redis://127.0.0.1:1/0", queue="q")
    started = time.monotonic()
    with pytest.raises(BrokerUnreachable, match=r"127\.0\.0\.1:1/"):
        adapter.check_reachable(timeout=2)
    assert time.monotonic() - started < 3


@pytest.mark.broker("redis")
def test_job_carries_the_raw_bytes_pickled_and_compressed(make_run) -> None:
    """The job's argument is the payload as sent; Redis holds it zlib-compressed, framing
    within what the size limit declares."""
    run = make_run()
    payload = wrap(run.run_id, 0, os.urandom(100_000))  # incompressible, not UTF-8
    producer = run.adapter.producer()
    producer.send(payload)
    producer.close()
    [job] = run.adapter.rq_queue().get_jobs()
    assert job.func_name == JOB_FUNCTION and job.args == (payload,)
    stored = run.adapter.connection.hget(job.key, "data")
    assert zlib.decompress(stored)  # RQ compresses the pickled call
    assert len(payload) < len(stored) <= run.adapter.size_limit.wire_bytes(len(payload))
    assert run.adapter.backlog().waiting == 1
    run.adapter.prepare()
    assert run.adapter.backlog().waiting == 0


@pytest.mark.broker("redis")
def test_worker_finds_redis_from_its_environment_and_ps_shows_no_password(pair_runs) -> None:
    """A worker started as the runner starts it reaches a password-protected URL's database
    through RQ_REDIS_URL; its command line and consumer.log carry no password.

    Database 3, so that a worker that fell back to RQ's default (localhost, database 0) would
    never see the jobs. The project's Redis has no password and accepts any."""
    adapter = RQAdapter("rq+redis://:S3cret@127.0.0.1:6379/3",
                        queue=f"qbtest-{uuid.uuid4().hex[:12]}")
    adapter.prepare()
    run = pair_runs(adapter, work_ms=0, cls=RQRun)
    run.send(3)
    run.consumer.start()
    run.wait_received(3, timeout=15)
    command_lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command_lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue  # exited while we looked
    ours = [line for line in command_lines if adapter.queue in line]
    assert ours and not any("S3cret" in line for line in ours)
    run.consumer.stop(timeout=10)
    assert "S3cret" not in run.consumer.log_path.read_text()


@pytest.mark.broker("redis")
def test_json_serializer_variant_stores_json_not_pickle(make_run) -> None:
    """json-serializer: Redis holds the job as zlib-compressed JSON, the payload as base64 text;
    the job function and argument are those of the default variant."""
    run = make_run("json-serializer")
    payload = wrap(run.run_id, 0, os.urandom(100_000))  # incompressible, not UTF-8
    producer = run.adapter.producer()
    producer.send(payload)
    producer.close()
    [job] = run.adapter.rq_queue().get_jobs()
    assert job.func_name == JOB_FUNCTION and list(job.args) == [payload]
    stored = run.adapter.connection.hget(job.key, "data")
    func_name, _, [argument], _ = json.loads(zlib.decompress(stored))
    assert func_name == JOB_FUNCTION and list(argument) == ["__bytes__"]
    assert len(stored) <= run.adapter.size_limit.wire_bytes(len(payload))
    assert run.adapter.size_limit.wire_bytes(10) != RQAdapter.size_limit.wire_bytes(10)


@pytest.mark.broker("redis")
def test_json_serializer_still_runs_any_function_a_job_names(make_run, tmp_path) -> None:
    """JSON stops unpickling, not code: RQ imports and calls whatever a job names, so whoever can
    write to the Redis still runs code in the worker (here os.mkdir; os.system works as well)."""
    run = make_run("json-serializer", work_ms=0)
    made = tmp_path / "made-by-a-json-job"
    run.adapter.rq_queue().enqueue("os.mkdir", str(made))
    run.consumer.start()
    wait_for(made.exists, f"the worker to run os.mkdir; log: {run.consumer.log_tail()}")


@pytest.mark.broker("redis")
@pytest.mark.parametrize("variant", ["default", "simple-worker", "json-serializer"])
def test_rq_worker_processes_every_message_once(make_run, variant: str) -> None:
    """`rq worker` hands each message to the handler once and leaves nothing behind."""
    run = make_run(variant, work_ms=0)
    run.send(20)
    run.consumer.start()
    run.wait_received(20)
    run.consumer.stop(timeout=10)
    result = tally(run.ledger.poll(), expected=20)
    assert (result.lost, result.duplicates, result.corrupt) == ((), (), 0)
    assert run.adapter.backlog().waiting == run.adapter.backlog().stranded == 0


@pytest.mark.broker("redis")
@pytest.mark.parametrize("variant", ["default", "simple-worker"])
def test_sigterm_finishes_the_job_in_hand_and_takes_no_other(make_run, variant: str) -> None:
    """SIGTERM is RQ's warm shutdown: the running job completes, the rest stay queued."""
    run = make_run(variant, work_ms=1000)
    run.send(4)
    run.consumer.start()
    run.wait_received(1)
    time.sleep(INTO_JOB_SEC)  # message 1 is running
    stop_sec = run.consumer.stop(timeout=10)
    assert 0.5 < stop_sec < 2  # waited for the job in hand, then exited
    assert run.seqs() == [0, 1]
    assert run.queued_seqs() == [2, 3]


@pytest.mark.broker("redis")
def test_runner_kill_reaches_the_horse_in_its_own_process_group(make_run) -> None:
    """rq.Worker's horse has a process group of its own; the runner's kill (the consumer's whole
    session) still takes it down, so the job in hand is not finished behind the kill's back."""
    run = make_run()
    run.send(3)
    run.consumer.start()
    run.wait_received(1)
    time.sleep(INTO_JOB_SEC)
    run.consumer.kill()
    time.sleep(3 * INTO_JOB_SEC)  # long enough for a surviving horse to finish message 1
    assert run.seqs() == [0]
    assert len(run.adapter.rq_queue().finished_job_registry.get_job_ids(cleanup=False)) == 1


def kill_each_during_message_1(runs: tuple[RQRun, ...]) -> None:
    """SIGKILL each worker INTO_JOB_SEC after its own first receipt: workers started together
    reach message 1 up to seconds apart on a loaded machine, so one shared sleep could land
    after a fast worker has finished it."""
    receipt_seen: dict[RQRun, float] = {}
    killed: set[RQRun] = set()

    def kill_the_due() -> bool:
        for run in runs:
            if run not in receipt_seen and run.received() >= 1:
                receipt_seen[run] = time.monotonic()
            into_message_1 = time.monotonic() - receipt_seen.get(run, math.inf)
            if run not in killed and into_message_1 >= INTO_JOB_SEC:
                run.consumer.kill()
                killed.add(run)
        return len(killed) == len(runs)

    wait_for(kill_the_due, "message 0 to finish on every worker")


@pytest.mark.slow
@pytest.mark.broker("redis")
def test_sigkill_mid_job_fails_it_or_retries_it_after_the_heartbeat_expires(make_run) -> None:
    """After a SIGKILL of worker and horse, the job in hand waits in the StartedJobRegistry;
    about 65 s later maintenance moves it to the FailedJobRegistry (no Retry) or runs it again
    (Retry). With result_ttl=0 the retried job fails after each run (RQ 3.0.0 bug).

    The four cases run side by side, each on its own queue, to keep the wait to one."""
    # A second of work keeps message 1 running long after the kill is due, on a busy machine too.
    default, retry = make_run("default", work_ms=1000), make_run("retry", work_ms=1000)
    simple = make_run("simple-worker", work_ms=1000)
    no_result = make_run("retry", work_ms=1000, adapter_class=ResultTTLZeroRQAdapter)
    runs = (default, retry, simple, no_result)
    for run in runs:
        run.send(3)
        run.consumer.start()
    kill_each_during_message_1(runs)
    for run in runs:
        assert run.seqs() == [0]
        assert run.queued_seqs() == [2]
    for run in runs:
        run.consumer.start()
    for run in runs:
        run.wait_received(2)  # message 2, then the worker idles
    # Worker dead, job in the StartedJobRegistry: Retry will bring it back, else it is lost.
    assert (default.adapter.backlog().waiting, default.adapter.backlog().stranded) == (0, 1)
    assert (simple.adapter.backlog().waiting, simple.adapter.backlog().stranded) == (0, 1)
    assert (retry.adapter.backlog().waiting, retry.adapter.backlog().stranded) == (1, 0)

    killed = time.monotonic()
    failed = default.adapter.rq_queue().failed_job_registry
    wait_for(lambda: len(retry.ledger.poll()) == 3 and len(no_result.ledger.poll()) == 5
             and failed.get_job_ids(cleanup=False), "maintenance to handle the abandoned jobs",
             timeout=ABANDONED_WAIT_SEC)
    assert time.monotonic() - killed > 45  # nothing happens before the heartbeat expires

    [job_id] = failed.get_job_ids(cleanup=False)
    failure = default.adapter.rq_queue().fetch_job(job_id).latest_result()
    assert "due to AbandonedJobError" in failure.exc_string
    assert default.seqs() == [0, 2] and default.adapter.backlog().stranded == 1
    assert retry.seqs() == [0, 1, 2]  # run again once, no duplicate
    assert retry.adapter.backlog().waiting == retry.adapter.backlog().stranded == 0
    assert no_result.seqs() == [0, 1, 1, 1, 2]  # ran 3 times, then failed
    no_result_failed = no_result.adapter.rq_queue().failed_job_registry
    wait_for(lambda: no_result_failed.get_job_ids(cleanup=False), "the retried job to fail")
    [job_id] = no_result_failed.get_job_ids(cleanup=False)
    failure = no_result.adapter.rq_queue().fetch_job(job_id).latest_result()
    assert "Execution" in failure.exc_string and "not found in Redis" in failure.exc_string
    # SimpleWorker's job expires only after job_timeout + 60 = 240 s: still held.
    assert simple.adapter.rq_queue().started_job_registry.get_job_ids(cleanup=False)


def test_graceful_stop_signal_is_rq_warm_shutdown() -> None:
    """The runner stops RQ with SIGTERM, what `docker stop` and systemd send."""
    assert RQAdapter.graceful_stop_signal == signal.SIGTERM
