"""Both experiments at small N on every pair, through the same runner users call.

The reliability figures must be what the libraries really do: a graceful stop loses nothing
anywhere, while a SIGKILL costs Huey and default Celery the task in hand (they ack before the
work) and costs the SQL queue nothing but a lease's wait.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pika
import pytest
from kafka import KafkaAdminClient

from queuebench import adapters
from queuebench.adapters.base import SizeLimit
from queuebench.adapters.sqlqueue import SqlQueueAdapter
from queuebench.adapters.sqs_common import endpoint_for, sqs_client
from queuebench.engine.common import Experiment
from queuebench.engine.consumer import ConsumerProcess
from queuebench.engine.results import ExperimentConfig, Result
from queuebench.engine.runner import run_one
from queuebench.engine.workload import Cell, Workload, cells
from queuebench.errors import MissingExtra
from queuebench.payloads.builder import record_batches
from tests.pairs import pair_params

# What a SIGKILL mid-task does to each (pair, variant), as documented and observed.
LOSES_ON_KILL = {
    ("huey+sqlite", "default"): True,
    ("huey+redis", "default"): True,
    ("huey+postgres", "default"): True,
    # The JSON serializer changes what is stored, not when huey acks ("the same as default").
    ("huey+sqlite", "json-serializer"): True,
    ("huey+redis", "json-serializer"): True,
    ("huey+postgres", "json-serializer"): True,
    # kombu's sqla transport hides a taken row at once and keeps unacked messages only in the
    # worker's memory: acks_late cannot bring back what a SIGKILL took (see adapters/celery.py).
    ("celery+sqlite", "default"): True,
    ("celery+sqlite", "acks-late"): True,
    ("celery+redis", "default"): True,
    ("celery+redis", "acks-late"): False,
    ("celery+rabbitmq", "default"): True,
    ("celery+rabbitmq", "acks-late"): False,
    ("celery+rabbitmq", "confirms"): True,  # confirms change the publish, not when it acks
    ("celery+sqs", "default"): True,
    ("celery+sqs", "acks-late"): False,
    ("boto3+sqs", "default"): False,
    # Auto-commit repeats what was handled since the last commit; it loses nothing here because
    # the kill lands before the first 5 s commit (confluent can lose the message in hand when
    # that commit fires mid-task: tests/test_kafka.py shows it).
    ("kafka-python+kafka", "default"): False,
    ("kafka-python+kafka", "commit-after"): False,
    ("kafka-python+kafka", "batched-producer"): False,  # the default consumer, as default
    ("confluent-kafka+kafka", "default"): False,
    ("confluent-kafka+kafka", "commit-after"): False,
    # faust commits done offsets every 2.8 s; exactly-once covers Kafka, not our handler's work.
    ("faust+kafka", "default"): False,
    ("faust+kafka", "exactly-once"): False,
    # Dramatiq acks after the task: Redis brings a dead worker's messages back after its
    # heartbeat timeout, RabbitMQ at once.
    ("dramatiq+redis", "default"): False,
    ("dramatiq+rabbitmq", "default"): False,
    ("dramatiq+redis", "short-retry"): False,  # retries change what a failure does, not acks
    ("dramatiq+rabbitmq", "short-retry"): False,
    ("dramatiq+rabbitmq", "confirms"): False,
    # RQ's forking worker sends the job in hand to the failed registry (AbandonedJobError);
    # Retry re-runs it; SimpleWorker's job waits out its timeout, then fails the same way.
    ("rq+redis", "default"): True,
    ("rq+redis", "retry"): False,
    ("rq+redis", "simple-worker"): True,
    ("rq+redis", "json-serializer"): True,  # rq.Worker without Retry, as default
    # kombu SimpleQueue threads ack after the handler: RabbitMQ requeues a dead connection's
    # unacked messages at once, Redis restores them after the 30 s visibility timeout.
    ("kombu+redis", "default"): False,
    ("kombu+redis", "connection-per-50"): False,
    ("kombu+rabbitmq", "default"): False,
    ("kombu+rabbitmq", "connection-per-50"): False,
    ("kombu+rabbitmq", "confirms"): False,
    ("sqlalchemy+sqlite", "default"): False,
    ("sqlalchemy+postgres", "default"): False,
}


# Pairs whose adapter's backlog() returns None (the broker cannot tell what it holds), so no broker
# check can run. None today: every adapter in queuebench/adapters/*.py returns a Backlog (only
# celery+sqlite leaves `stranded` None, as kombu keeps processed and stranded rows alike).
NO_BACKLOG: frozenset[str] = frozenset()
RECEIPT_STATUSES = ("ok", "corrupt")  # a "started" line notes work beginning, not a receipt


@pytest.fixture(scope="module")
def payloads():
    """The stock records of 10 messages of 20 records (the name: what they become)."""
    return record_batches("sqlite://", 20, 10)


def cell_of(scenario: str, messages: int, *, stop: str | None, work_ms: float) -> Cell:
    """The one cell of a small workload, built through the same model experiment files use."""
    faults = [{"consumer": stop}] if stop else []
    start = "after" if scenario == "reliability" else "before"
    workload = Workload(messages=messages, payload={"records": 20}, work_ms=work_ms,
                        consumers={"start": start}, faults=faults)
    [cell] = cells(scenario, workload)
    return cell


def variants_of(scheme: str) -> list[str]:
    try:
        return [v.name for v in adapters.adapter_class(adapters.PAIRS[scheme]).variants]
    except MissingExtra:
        return ["default"]  # the pair's own tests then fail, saying what is missing


def experiment_params(*, every_variant: bool = False) -> list:
    """(pair, variant) parameters: the library defaults of each pair, or every variant."""
    return [pytest.param(p.values[0], variant, marks=p.marks, id=f"{p.id}-{variant}")
            for p in pair_params()
            for variant in (variants_of(p.values[0]) if every_variant else ["default"])]


@dataclass(frozen=True)
class Observed:
    """One experiment's result, with what the test itself saw while it ran."""

    result: Result
    ledger_dir: Path
    run_id: str  # stamped on the experiment's messages (a throughput warm-up has its own)
    sent: int
    stop_ns: list[int]  # when the runner asked a consumer to stop gracefully (time.time_ns)


def run(scenario, pair, variant, payloads, tmp_path, *, stop=None, work_ms=0.0,
        queue: str | None = None) -> Observed:
    queue = queue or f"qb-test-{uuid.uuid4().hex[:8]}"
    adapter = adapters.create(pair, queue=queue, variant=variant)
    deadline = 60.0 + adapter.variant.redelivery_sec
    config = ExperimentConfig(scenario, pair, variant, "json", len(payloads), 20, work_ms,
                              deadline, wait_sec=0.0 if stop else None, stop=stop)
    run_ids: list[str] = []
    stop_ns: list[int] = []
    post_init, graceful_stop = Experiment.__post_init__, ConsumerProcess.ask_to_stop

    def note_run_id(self) -> None:
        post_init(self)
        run_ids.append(str(self.run_id))

    def note_stop(self, *args, **kwargs):
        stop_ns.append(time.time_ns())
        return graceful_stop(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Experiment, "__post_init__", note_run_id)
        patch.setattr(ConsumerProcess, "ask_to_stop", note_stop)
        result = run_one(config, cell_of(scenario, len(payloads), stop=stop, work_ms=work_ms),
                         adapter, payloads, tmp_path / "experiment")
    assert len(run_ids) == 1, run_ids
    return Observed(result, tmp_path / "experiment" / "ledger", run_ids[0], len(payloads),
                    stop_ns)


def ledger_files(observed: Observed) -> dict[str, list[list[str]]]:
    """Each consumer session's receipts file: this run's lines, split (run_id seq sent_ns
    received_ns status), read here rather than through the ledger code whose figures they check."""
    files = {}
    for path in sorted(observed.ledger_dir.glob("receipts-*.log")):
        lines = [line.split() for line in path.read_text().splitlines()]
        assert all(len(line) == 5 for line in lines), (path, lines)
        files[path.name] = [line for line in lines if line[0] == observed.run_id]
    assert files, f"no receipts file under {observed.ledger_dir}"
    return files


def assert_figures_match_the_ledger(m: dict, observed: Observed) -> None:
    """The received, lost and duplicated figures are what the receipts files say."""
    sent = observed.sent
    lines = [line for file_lines in ledger_files(observed).values() for line in file_lines]
    counts = Counter(int(line[1]) for line in lines if line[4] in RECEIPT_STATUSES)
    received = {seq for seq in counts if seq < sent}
    assert m["total"] == sent
    assert len(received) == m["total"] - m["lost"], (sorted(received), m)
    assert m["lost_seqs"] == sorted(set(range(sent)) - received), m
    assert m["duplicates"] == sum(n - 1 for seq, n in counts.items() if seq < sent), m


def assert_broker_agrees(pair: str, check: dict) -> None:
    """The broker's own count ran (where the adapter can count) and does not contradict us."""
    if pair in NO_BACKLOG:
        assert check["checked"] is False, check
        return
    assert check["checked"] is True, check
    assert check["waiting"] == 0, check
    if check["stranded"] is None:  # the broker cannot count stranded messages: "cannot tell"
        assert check["agrees"] in (True, None), check
    else:
        assert check["agrees"] is True, check


def assert_accounted_for(observed: Observed, pair: str) -> dict:
    result = observed.result
    assert result.status == "ok", result.error
    m = result.measurements
    assert_figures_match_the_ledger(m, observed)
    assert m["outcome"] in ("complete", "broker empty")
    assert_broker_agrees(pair, m["broker_check"])
    return m


def first_session(observed: Observed) -> list[list[str]]:
    """This run's lines in the first consumer start's file: its earliest line is earliest."""
    files = [lines for lines in ledger_files(observed).values() if lines]
    assert files, f"no line of run {observed.run_id}"
    return min(files, key=lambda lines: min(int(line[3]) for line in lines))


def assert_killed_mid_task(observed: Observed) -> None:
    """The killed session's last line notes a task begun whose receipt it never wrote."""
    lines = first_session(observed)
    _, seq, _, _, status = lines[-1]
    assert status == "started", f"the kill came between tasks: last line {lines[-1]}"
    assert not any(line[1] == seq and line[4] in RECEIPT_STATUSES for line in lines), lines


def assert_stopped_mid_task(observed: Observed, work_ms: float) -> None:
    """The stop signal went out while the stopped session's newest task was in its work.

    The ledger cannot show this alone: a graceful stop lets the task in hand finish, so its
    receipt follows as after any task. The handler notes a start, then works `work_ms`: the task
    was in hand from its noted start until at least work_ms later.
    """
    stop_ns = observed.stop_ns[0]
    begun = [int(line[3]) for line in first_session(observed)
             if line[4] == "started" and int(line[3]) <= stop_ns]
    assert begun, "no task had begun when the stop went out"
    assert stop_ns < max(begun) + work_ms * 1_000_000, (
        f"the stop went out {(stop_ns - max(begun)) / 1e6:.0f} ms after the newest task began, "
        f"which takes {work_ms} ms: between tasks")


@pytest.mark.slow
@pytest.mark.parametrize(("pair", "variant"), experiment_params())
def test_graceful_stop_loses_nothing(pair, variant, payloads, tmp_path):
    """Stopping the consumer with its library's shutdown signal mid-run loses no message."""
    observed = run("reliability", pair, variant, payloads, tmp_path, stop="graceful",
                   work_ms=150)
    m = assert_accounted_for(observed, pair)
    assert_stopped_mid_task(observed, work_ms=150)
    assert m["lost"] == 0
    assert m["consumer_starts"] == 2


@pytest.mark.slow
@pytest.mark.parametrize(("pair", "variant"), experiment_params(every_variant=True))
def test_kill_mid_task_costs_what_the_library_documents(pair, variant, payloads, tmp_path):
    """A SIGKILL mid-task loses the task in hand exactly where the library acks before work."""
    observed = run("reliability", pair, variant, payloads, tmp_path, stop="kill", work_ms=300)
    m = assert_accounted_for(observed, pair)
    assert_killed_mid_task(observed)
    assert (m["lost"] > 0) == LOSES_ON_KILL[(pair, variant)], m


@pytest.mark.slow
@pytest.mark.parametrize(("pair", "variant"), experiment_params())
def test_throughput_receives_everything_and_times_it(pair, variant, payloads, tmp_path):
    """Throughput receives every message and reports rates and latency percentiles."""
    m = assert_accounted_for(run("throughput", pair, variant, payloads, tmp_path), pair)
    assert m["lost"] == 0 and m["duplicates"] == 0
    assert m["consume_throughput"] > 0 and m["produce_throughput"] > 0
    latency = m["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p99"] <= latency["max"]


class TinySqlQueue(SqlQueueAdapter):
    size_limit = SizeLimit(max_bytes=1_000, error="too big for the test")


def test_payload_over_the_limit_is_a_no_go_with_sizes(payloads, tmp_path):
    """A payload over the pair's limit stops that pair before sending, naming size and limit."""
    config = ExperimentConfig("throughput", "sqlalchemy+sqlite", "default", "json", 10, 20, 0,
                              30.0)
    adapter = TinySqlQueue("sqlalchemy+sqlite:///q.sqlite", queue="q")
    result = run_one(config, cell_of("throughput", 10, stop=None, work_ms=0), adapter, payloads,
                     tmp_path)
    assert result.status == "no-go"
    assert "over its limit of 1,000 bytes (too big for the test)" in result.error
    assert not (tmp_path / "ledger").exists()


def queue_on_broker(pair: str, queue: str) -> bool:
    """Whether the broker still holds `queue`, asked with the broker's own client."""
    broker = pair.partition("+")[2]
    if broker == "rabbitmq":
        connection = pika.BlockingConnection(
            pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F"))
        try:
            connection.channel().queue_declare(queue, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker:  # 404 NOT_FOUND
            return False
        finally:
            if connection.is_open:
                connection.close()
    if broker == "kafka":
        admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
        try:
            return queue in admin.list_topics()
        finally:
            admin.close()
    client = sqs_client(endpoint_for("boto3+sqs://127.0.0.1:9324"), connect_timeout=5,
                        read_timeout=5, total_max_attempts=1)
    return queue in {url.rsplit("/", 1)[1] for url in
                     client.list_queues(QueueNamePrefix=queue).get("QueueUrls", [])}


@pytest.mark.parametrize("pair", pair_params(
    ["dramatiq+rabbitmq", "celery+rabbitmq", "kombu+rabbitmq", "kafka-python+kafka",
     "confluent-kafka+kafka", "faust+kafka", "boto3+sqs", "celery+sqs"]))
def test_a_measured_case_leaves_no_queue_on_the_broker(pair, payloads, tmp_path):
    """Where a broker keeps an empty queue (RabbitMQ's durable queues, Kafka's topics, SQS
    queues), the queue a measured case used is gone after it: runs leave no litter."""
    queue = f"qb-test-{uuid.uuid4().hex[:8]}"
    observed = run("throughput", pair, "default", payloads[:3], tmp_path, queue=queue)
    assert observed.result.measurements["outcome"] == "complete"
    assert not queue_on_broker(pair, queue)
