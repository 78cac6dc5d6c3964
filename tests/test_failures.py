"""What each library does with a message whose handler raised, on real brokers.

20 messages with fail_fraction 0.2: messages 4, 9, 14 and 19 make the handler raise (after their
"failed" receipt). Every good message must arrive once; the failing ones are retried,
dead-lettered, kept or dropped as the pair declares in `on_failure`, and `failure_outcome`
counts where they ended on the broker.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from queuebench import adapters
from queuebench.adapters.base import Adapter
from queuebench.adapters.dramatiq import LIBRARY_DEFAULTS, SHORT_RETRY, retrying_span_ms
from queuebench.engine import phases
from queuebench.engine.common import Experiment
from queuebench.engine.results import ExperimentConfig
from queuebench.engine.workload import Workload, cells
from queuebench.payloads.builder import record_batches
from tests.pairs import pair_params

FAILING = [4, 9, 14, 19]  # of 20 messages at fail_fraction 0.2
DAY_MS = 86_400_000


def run_failing(adapter: Adapter, tmp_path: Path, messages: int = 20,
                deadline_sec: float = 60.0) -> dict[str, object]:
    """One repeat of `messages` with fail_fraction 0.2 through the engine, as the runner runs it,
    then where the failed messages ended (`failure_outcome`, read once the consumers stopped)."""
    cell = cells("error-rate", Workload(messages=messages, payload={"records": 5},
                                        fail_fraction=0.2, deadline_sec=deadline_sec))[0]
    config = ExperimentConfig(cell.kind, adapter.scheme, adapter.variant.name, cell.format,
                              cell.messages, cell.records, cell.work_ms, deadline_sec,
                              fail_fraction=cell.fail_fraction)
    experiment = Experiment(config, cell, adapter,
                            record_batches("sqlite://", cell.records, cell.messages),
                            tmp_path / "run")
    try:
        figures = phases.run(experiment)
        return {**figures, "failure_outcome": adapter.failure_outcome()}
    finally:
        experiment.close()
        adapter.prepare()  # leaves nothing behind on a shared broker
        adapter.cleanup()


def create(pair: str, variant: str, tmp_path: Path) -> Adapter:
    url = adapters.PAIRS[pair].default_url
    if url.startswith(f"{pair}:///"):  # an embedded pair: a database of its own
        url = f"{pair}:///{tmp_path / 'queue.sqlite'}"
    return adapters.create(url, queue=f"qb-failures-{uuid.uuid4().hex[:8]}", variant=variant)


# pair, variant, handler runs per failing message, where they ended on the broker
EXPECTED = {
    "rq+redis": ("default", 1, {"in_failed_registry": 4, "retry_scheduled": 0}),
    "dramatiq+redis": ("short-retry", 4, {"dead_lettered": 4, "retry_pending": 0}),
    "huey+redis": ("default", 1, {"error_results": 4}),
    "celery+redis": ("default", 1, None),
    "sqlalchemy+sqlite": ("default", 1, None),
}


@pytest.mark.parametrize("pair", pair_params(EXPECTED))
def test_failing_messages_end_where_the_library_puts_them(pair, tmp_path):
    """Every good message arrives once and none is lost; each failing one is tried as often as
    the library retries it, then ends dead-lettered, in a failed registry, as a stored error, or
    dropped (nothing left on the broker)."""
    variant, runs_each, outcome = EXPECTED[pair]
    m = run_failing(create(pair, variant, tmp_path), tmp_path)
    assert (m["successful"], m["lost"], m["duplicates"]) == (16, 0, 0)
    assert m["failed_seqs"] == FAILING and m["unexpected_failures"] == 0
    assert m["failed_attempts"] == runs_each * len(FAILING)
    assert m["outcome"] == "complete"
    assert m["failure_outcome"] == outcome


@pytest.mark.broker("redis")
def test_dramatiq_defaults_leave_failing_messages_retrying_after_a_complete_run(tmp_path):
    """At dramatiq's defaults the first retry comes 15-30 s after a failure and the last weeks
    later: a run given 12 s does not wait for retries due after it, and ends complete, in
    seconds, with each failing message tried once and its retry pending on the delay queue,
    none dead-lettered, the good ones all in, and the broker's count agreeing with the ledger."""
    adapter = create("dramatiq+redis", "default", tmp_path)
    m = run_failing(adapter, tmp_path, messages=10, deadline_sec=12.0)
    assert (m["successful"], m["lost"], m["failed_seqs"]) == (8, 0, [4, 9])
    assert m["failed_attempts"] == 2
    assert m["outcome"] == "complete"
    assert m["failure_outcome"] == {"dead_lettered": 0, "retry_pending": 2}
    assert m["broker_check"]["agrees"] is True


def test_dramatiq_retry_spans_come_from_its_backoff():
    """20 retries from 15 s, each wait doubling with a jitter of 1-2x and capped near 7 days,
    span 23 to 46 days; the short-retry variant's 3 from 100 ms span 0.7 to 1.4 s."""
    low, high = retrying_span_ms(LIBRARY_DEFAULTS)
    assert (round(low / DAY_MS, 1), round(high / DAY_MS, 1)) == (23.2, 46.4)
    assert retrying_span_ms({**LIBRARY_DEFAULTS, **SHORT_RETRY}) == (700, 1400)


@pytest.mark.parametrize("pair", list(adapters.PAIRS))
def test_every_pair_says_what_it_does_with_a_failing_message(pair):
    """Each pair and variant declares its handling of a failing message, and results carry it."""
    cls = adapters.adapter_class(adapters.PAIRS[pair])
    for variant in cls.variants:
        adapter = cls(adapters.PAIRS[pair].default_url, queue="q", variant=variant.name)
        assert adapter.describe()["on_failure"].startswith(("not retried", "retried",
                                                           "enqueued again"))
