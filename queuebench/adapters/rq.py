"""RQ jobs over Redis: the producer enqueues a job, RQ's own `rq worker` runs it.

Features: a job leaves Redis's books only once a worker has run it, but a job whose worker died
runs again only if it carries a `Retry`. The worker moves the job id to an intermediate list
(LMOVE), records an execution in the StartedJobRegistry that expires after
`min(job_timeout, job_monitoring_interval) + 60` s (renewed every `job_monitoring_interval`; the
60 s are fixed in `Worker.get_heartbeat_ttl`), then forks a work horse, which marks the job
STARTED and takes it off the intermediate list. A maintenance pass (every `maintenance_interval`,
run between jobs or when an idle worker's `worker_ttl - 15` s dequeue times out) finds:
- an expired STARTED execution (`StartedJobRegistry.cleanup`): re-enqueued if `retries_left`,
  else moved to the FailedJobRegistry "due to AbandonedJobError". Observed: 65-67 s after a kill.
- a job still on the intermediate list (worker killed before its horse started), after its
  execution, if any, expired and then one more minute (`IntermediateQueue.cleanup`): re-enqueued
  or failed the same way. So a Retry can take about 130 s (observed: 127 s).
`SimpleWorker` runs jobs in its own process without heartbeats: its executions expire after
`job_timeout + 60` s. Killing only the horse (the OOM killer's choice) is seen by the worker at
once (observed): the job is retried or failed ("Work-horse terminated unexpectedly").

RQ 3.0.0 bug, observed: with `result_ttl=0`, a job retried after its worker was killed runs, then
fails in `Job.delete` (`ValueError: Execution ... not found in Redis`: the dead execution's hash
expires 60 s before its entry in the job's ExecutionRegistry), so Retry runs it until retries are
spent and it ends FAILED: 3 receipts for one message with `Retry(max=3)`. Hence RQ's default 500.

`rq.Worker`'s horse calls `os.setpgrp()`, so a SIGKILL of the worker's process group alone leaves
the horse running: observed, it finishes the job and nothing is lost. The runner kills the whole
session, horse included, as a container or machine loss would. SIGTERM (or SIGINT) is RQ's warm
shutdown: the job in hand finishes, no other is taken; a second signal (1 s or more later) kills
the horse. With redis-py 8.2.0 that warm shutdown took up to 60 s, however short the job: RQ
unsubscribes its pubsub thread, which then waits 60 s (RQ's `sleep_time`) for a subscription, and
8.2's `PubSubWorkerThread.stop()` now joins that thread (observed in `Thread.join`, all four
workers of a test); hence redis-py below 8.2 in pyproject.toml.

RQ's stock worker forks a horse per job, and the horse imports the job's module after the fork:
the cost seed 003 met (measured 53-56 ms a job; 26-31 ms when the worker imports the handler
before forking; 3.5-4.6 ms with SimpleWorker, on a busy 2-core machine). Jobs are pickled, then
zlib-compressed: incompressible payloads gain 62-82 bytes plus 5 per 16 KiB (1,000,000 bytes:
+391); 10,000 stock records are stored as 238,082 bytes (JSON, 1,749,204 sent) and 183,210
(protobuf, 496,435). Enqueue also builds `repr(payload)` for the job's description (kept: 75
characters).

Serializer: RQ pickles the job (function name, arguments) and `rq worker` unpickles what it
fetches, so whoever can write to the Redis runs code in the worker. The `json-serializer` variant
uses RQ's JSONSerializer (`queuebench.adapters.rq_json`, which adds base64 for bytes) on both
sides: nothing is unpickled, but a job still names its function by import path and the worker
calls whatever that names (`os.system`, builtins too: `rq.utils.import_attribute`), so a writer
to the Redis still runs code; only an allow-list of functions (a custom job class) would stop it.
Delivery is the same as `default`.

Connection URL: `rq+redis://127.0.0.1:6379/0` (the part after `rq+` is a redis-py URL). The
worker gets it in `RQ_REDIS_URL`, not `--url`: a password on the command line is shown to every
local user by `ps`.

Options: `rq worker --worker-class --worker-ttl --maintenance-interval --job-monitoring-interval`
and the enqueue options `job_timeout`, `result_ttl`, `failure_ttl`, `retry`; all recorded in each
variant's settings.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
from collections.abc import Iterable

import redis
import rq
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus, Retry
from rq.registry import BaseRegistry
from rq.results import Result
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from queuebench.adapters.base import Adapter, Backlog, Capabilities, SizeLimit, Variant
from queuebench.adapters.redis_probe import check_redis, redis_version
from queuebench.worker.handler import handle

# Enqueued by name, so the producer needs no handler; the worker finds it already imported.
JOB_FUNCTION = f"{handle.__module__}.{handle.__qualname__}"
# Worst case (incompressible payload): pickle framing (62-82 bytes measured, rounded up) plus
# zlib's stored-block headers.
PICKLE_ZLIB_FRAMING_BYTES = 104
ZLIB_BLOCK_BYTES, ZLIB_BLOCK_HEADER_BYTES = 16_384, 5


def json_zlib_wire_bytes(payload_bytes: int) -> int:
    """The json-serializer variant's job data for an incompressible payload: zlib gives back
    base64's third but not quite all of it; measured +77 bytes for 1 byte, +270 for 16 KiB,
    +10,047 for 1,000,000 and +17,508 for 1,749,204 (1.0%)."""
    return payload_bytes + payload_bytes // 98 + 120

# The timings that decide when an abandoned job is noticed; RQ's defaults are 420, 600 and 30 s,
# with which a killed job waits 90 s, then up to 600 s more. Same in every variant.
WORKER_OPTIONS = {
    "worker_ttl_sec": ("--worker-ttl", 20),  # idle workers wake every worker_ttl - 15 = 5 s
    "maintenance_interval_sec": ("--maintenance-interval", 5),
    "job_monitoring_interval_sec": ("--job-monitoring-interval", 5),
}
WORKER_SETTINGS = {name: value for name, (_, value) in WORKER_OPTIONS.items()}
JOB_OPTIONS = {
    "job_timeout_sec": 180,  # RQ's default
    # RQ's default. With 0, a job retried after its worker died fails after running: see above.
    "result_ttl_sec": 500,
    "failure_ttl_sec": 365 * 24 * 3600,  # RQ's default: failed jobs stay for inspection
    "retry_max": None,
    "serializer": "pickle",  # RQ's default
}
# Settings name -> what `rq worker --serializer` and rq.Queue take; None: RQ's default (pickle).
SERIALIZERS = {"pickle": None, "json": "queuebench.adapters.rq_json.JSONSerializer"}
FORKING = {"worker_class": "rq.Worker",
           "abandoned_after_sec": "job_monitoring_interval + 60 = 65 after the last heartbeat; "
                                  "125 if killed before the horse started"}


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RQProducer:
    def __init__(self, queue: rq.Queue, options: dict[str, object]) -> None:
        self.queue = queue
        self.options = options

    def send(self, payload: bytes, *, key: str | None = None) -> None:
        self.queue.enqueue(JOB_FUNCTION, payload, **self.options)  # raises what redis-py raises

    def flush(self) -> None:
        """Each enqueue has written the job hash and pushed its id when it returns."""

    def close(self) -> None:
        self.queue.connection.close()


class RQAdapter(Adapter):
    scheme = "rq+redis"
    library = "rq"
    broker = "redis"
    capabilities = Capabilities(
        ack="after the job returns (the job leaves StartedJobRegistry)",
        on_worker_killed="the job in hand stays in StartedJobRegistry until its heartbeat "
                         "expires; then maintenance re-enqueues it with Retry, else moves it to "
                         "FailedJobRegistry (AbandonedJobError)",
        redelivery_after="with Retry: heartbeat expiry (job_monitoring_interval + 60 s) and the "
                         "next maintenance pass, 65-70 s measured; about 130 s if the worker "
                         "died before its horse started; without Retry: never",
        ordering="FIFO (RPUSH, LMOVE) with one worker; a retried job goes to the back",
        carries_bytes="raw bytes as the job argument, pickled then zlib-compressed (62-82 "
                      "bytes + 5 per 16 KiB on incompressible data; 1.75 MB of JSON is stored "
                      "as 238 KB); json-serializer: base64 text in JSON, then zlib",
        serializer="pickle (RQ's default): whoever can write to the Redis runs code in the "
                   "worker; json-serializer: JSON, nothing is unpickled, but the worker calls "
                   "whatever function a job names by import path (os.system too), so a writer "
                   "to the Redis still runs code",
        durability="nothing: enqueue writes the job hash and RPUSHes its id, RQ sets no "
                   "persistence option; the broker's own persistence (save, appendonly) decides",
    )
    size_limit = SizeLimit(
        max_bytes=512 * 1024 * 1024,  # compared with the job hash's `data` field
        error="Redis proto-max-bulk-len (512 MB): the server closes the connection; redis-py: "
              "ConnectionError ... Broken pipe",
        overhead=lambda n: (n + PICKLE_ZLIB_FRAMING_BYTES
                            + n // ZLIB_BLOCK_BYTES * ZLIB_BLOCK_HEADER_BYTES),
    )
    variants = (
        Variant("default", {**WORKER_SETTINGS, **JOB_OPTIONS, **FORKING},
                note="rq.Worker (a forked work horse per job), no Retry"),
        Variant("retry", {**WORKER_SETTINGS, **JOB_OPTIONS, **FORKING, "retry_max": 3,
                          "retry_interval_sec": 0},
                note="Retry(max=3): an abandoned job is enqueued again by maintenance",
                # 65 s after the last heartbeat; 125 s if killed before the horse started.
                redelivery_sec=130,
                on_failure="enqueued again at once (Retry(max=3), no interval) up to 3 times, "
                           "then moved to the FailedJobRegistry"),
        Variant("simple-worker", {**WORKER_SETTINGS, **JOB_OPTIONS,
                                  "worker_class": "rq.SimpleWorker",
                                  "abandoned_after_sec": "job_timeout + 60 = 240 after the start "
                                                         "(no heartbeat during a job)"},
                note="rq.SimpleWorker: jobs run in the worker process, no fork; no Retry"),
        Variant("json-serializer", {**WORKER_SETTINGS, **JOB_OPTIONS, **FORKING,
                                    "serializer": "json"},
                note="rq.Worker, no Retry, RQ's JSONSerializer (bytes as base64) in place of "
                     "pickle"),
    )
    concurrency_unit = ("rq worker processes, one job at a time each (N `rq worker` commands "
                        "side by side, started and stopped together by "
                        "queuebench.adapters.rq_worker)")
    # RQ's warm shutdown (SIGINT too). An idle RQ 3.0 worker raises StopRequested from its
    # handler; should the signal land inside a finalizer (a redis Pipeline's __del__), Python
    # swallows it and the worker carries on, so that stop ends in a kill (once in a full test run).
    graceful_stop_signal = signal.SIGTERM
    on_failure = ("not retried: the job is moved to the FailedJobRegistry with its traceback, "
                  "kept for failure_ttl (a year)")

    def __init__(self, url: str, *, queue: str, variant: str = "default") -> None:
        super().__init__(url, queue=queue, variant=variant)
        self.redis_url = "redis://" + url.partition("://")[2]
        if self.serializer is not None:  # the pair's limit, JSON's framing
            self.size_limit = dataclasses.replace(type(self).size_limit,
                                                  overhead=json_zlib_wire_bytes)
        self._connection: redis.Redis | None = None

    @property
    def connection(self) -> redis.Redis:
        if self._connection is None:
            self._connection = redis.Redis.from_url(self.redis_url, socket_connect_timeout=10,
                                                    socket_timeout=30)
        return self._connection

    @property
    def serializer(self) -> str | None:
        """The dotted path of this variant's RQ serializer; None for RQ's default, pickle."""
        return SERIALIZERS[str(self.settings["serializer"])]

    def rq_queue(self, connection: redis.Redis | None = None) -> rq.Queue:
        return rq.Queue(self.queue, connection=connection or self.connection,
                        serializer=self.serializer)

    def check_reachable(self, timeout: float) -> None:
        check_redis(self.scheme, self.redis_url, timeout)

    def broker_version(self) -> str | None:
        return redis_version(self.redis_url)

    def job_options(self) -> dict[str, object]:
        retry_max = self.settings["retry_max"]
        return {"job_timeout": self.settings["job_timeout_sec"],
                "result_ttl": self.settings["result_ttl_sec"],
                "failure_ttl": self.settings["failure_ttl_sec"],
                "retry": Retry(max=retry_max, interval=self.settings["retry_interval_sec"])
                if retry_max else None}

    def registries(self, queue: rq.Queue) -> Iterable[BaseRegistry]:
        return (queue.started_job_registry, queue.failed_job_registry,
                queue.finished_job_registry, queue.deferred_job_registry,
                queue.scheduled_job_registry, queue.canceled_job_registry)

    def prepare(self) -> None:
        queue = self.rq_queue()
        registries = self.registries(queue)
        job_ids = set(queue.intermediate_queue.get_job_ids())
        for registry in registries:
            job_ids.update(registry.get_job_ids(cleanup=False))
        keys = [queue.intermediate_queue.key, WORKERS_BY_QUEUE_KEY % queue.name,
                *(registry.key for registry in registries)]
        for job_id in job_ids:  # keys deleted directly: Job.delete trips on expired executions
            executions = ExecutionRegistry(job_id=job_id, connection=self.connection)
            job_key = Job.key_for(job_id)
            keys += [job_key, f"{job_key}:dependents", f"{job_key}:dependencies",
                     Result.get_key(job_id), executions.key,
                     queue.intermediate_queue.get_first_seen_key(job_id),
                     *(Execution(execution_id.decode(), job_id, self.connection).key
                       for execution_id in self.connection.zrange(executions.key, 0, -1))]
        queue.delete(delete_jobs=True)  # queued jobs, then the queue itself
        self.connection.delete(*keys)

    def producer(self) -> RQProducer:
        connection = redis.Redis.from_url(self.redis_url, socket_connect_timeout=10,
                                          socket_timeout=30)
        return RQProducer(self.rq_queue(connection), self.job_options())

    def consumer_argv(self, concurrency: int = 1) -> list[str]:
        """`rq worker`; its Redis URL goes in the environment (`consumer_env`).

        An RQ worker runs one job at a time, so concurrency N is N `rq worker` processes, the
        same command each, under `queuebench.adapters.rq_worker`. Not `rq worker-pool -n N`
        (RQ 3.0): its workers cannot be given --worker-ttl, --maintenance-interval or
        --job-monitoring-interval (they would fall back to 420, 600 and 30 s, which decide when
        an abandoned job comes back) and run with the scheduler on, which `rq worker` does not.
        """
        argv = [sys.executable, "-m", "rq.cli", "worker",
                "--worker-class", str(self.settings["worker_class"])]
        for name, (flag, _) in WORKER_OPTIONS.items():
            argv += [flag, str(self.settings[name])]
        if self.serializer is not None:
            argv += ["--serializer", self.serializer]
        argv = [*argv, self.queue]
        if concurrency == 1:
            return argv
        return [sys.executable, "-m", "queuebench.adapters.rq_worker", str(concurrency), "--",
                *argv]

    def consumer_env(self) -> dict[str, str]:
        """RQ's CLI reads `--url` from `RQ_REDIS_URL`: the password stays off the command line."""
        return {"RQ_REDIS_URL": self.redis_url}

    def worker_alive(self, worker_name: str) -> bool:
        """Is the worker running? Its Redis hash outlives a SIGKILL by `worker_ttl + 60` s, so a
        worker on this host is checked by its pid."""
        key = rq.Worker.redis_worker_namespace_prefix + worker_name
        hostname, pid, death = self.connection.hmget(key, ["hostname", "pid", "death"])
        if hostname is None or death is not None:
            return False
        if hostname.decode() == socket.gethostname() and pid:
            return pid_running(int(pid))
        return True  # elsewhere: trust the registry's expiry

    def backlog(self) -> Backlog:
        """Queued jobs, running ones and abandoned ones that Retry brings back will come; the
        failed registry and abandoned jobs without retries left never will.

        Read without RQ's cleanup, which would itself move abandoned jobs.
        """
        queue = self.rq_queue()
        started = queue.started_job_registry
        now = self.connection.time()[0]
        running = due_back = abandoned = 0
        started_ids = set()
        for entry, expires in self.connection.zrange(started.key, 0, -1, withscores=True):
            execution = Execution.from_composite_key(entry.decode(), self.connection)
            started_ids.add(execution.job_id)
            worker = self.connection.hget(execution.key, "worker_name")
            if expires > now and worker and self.worker_alive(worker.decode()):
                running += 1
            elif (job := queue.fetch_job(execution.job_id)) is None or job.get_status(
                    refresh=False) not in (JobStatus.STARTED, JobStatus.QUEUED):
                continue  # finished or failed meanwhile: not abandoned
            elif job.retries_left:
                due_back += 1
            else:
                abandoned += 1
        # Taken by a worker that died before recording an execution: maintenance handles it
        # after a minute like an abandoned job.
        for job_id in set(queue.intermediate_queue.get_job_ids()) - started_ids:
            job = queue.fetch_job(job_id)
            if job is not None and job.retries_left:
                due_back += 1
            elif job is not None:
                abandoned += 1
        queued, failed = queue.count, queue.failed_job_registry.get_job_count(cleanup=False)
        return Backlog(
            waiting=queued + running + due_back, stranded=abandoned + failed,
            detail=f"{queued} queued, {running} running, {due_back} abandoned and due back "
                   f"(Retry), {abandoned} abandoned without retries left, {failed} in "
                   "FailedJobRegistry")

    def failure_outcome(self) -> dict[str, int]:
        """Jobs in the FailedJobRegistry, and retries scheduled for later (a Retry interval)."""
        queue = self.rq_queue()
        return {"in_failed_registry": queue.failed_job_registry.get_job_count(cleanup=False),
                "retry_scheduled": queue.scheduled_job_registry.get_job_count(cleanup=False)}

    def cleanup(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
