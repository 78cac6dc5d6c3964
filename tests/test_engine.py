"""The engine: experiment files as data, sweeps, paced producing from intended send times, and
the figures computed once for every workload."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from queuebench import adapters
from queuebench.adapters.base import Backlog
from queuebench.engine import phases
from queuebench.engine.common import Experiment
from queuebench.engine.results import ExperimentConfig, Result
from queuebench.engine.runner import search_rate, sustained
from queuebench.engine.workload import SHIPPED_DIR, Search, Workload, cells, load
from queuebench.errors import ConsumerFailed, UsageError
from queuebench.payloads.builder import record_batches
from queuebench.worker.envelope import unwrap
from tests.test_cli import one_line_error, run_cli


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml")))
def test_every_shipped_experiment_loads(name):
    """Each file in experiments/ is valid and expands to at least one cell."""
    assert all(cells(part, workload) for part, workload in load(name))


def test_shipped_files_are_the_seed_experiments():
    """reliability stops the consumer midway both ways; throughput repeats 3 times; reference
    is seed 003's 100 and 10,000 messages in both formats."""
    [(_, reliability)] = load("reliability")
    assert [c.stop for c in cells("reliability", reliability)] == ["graceful", "kill"]
    [(_, throughput)] = load("throughput")
    assert throughput.repeats == 3 and cells("throughput", throughput)[0].kind == "throughput"
    reference = [(c.kind, c.messages, c.format) for name, w in load("reference")
                 for c in cells(name, w)]
    assert ("reliability", 100, "protobuf") in reference
    assert ("throughput", 10_000, "json") in reference and len(reference) == 6


def test_a_list_where_a_value_goes_is_a_sweep(tmp_path):
    """consumers: [1, 4] and two formats make four cells, in file order."""
    path = write(tmp_path, "messages: 10\npayload: {format: [json, protobuf]}\n"
                 "consumers: {processes: [1, 4]}\n")
    [(name, workload)] = load(str(path))
    assert name == "mine"
    assert [(c.format, c.processes) for c in cells(name, workload)] == [
        ("json", 1), ("json", 4), ("protobuf", 1), ("protobuf", 4)]


def test_set_overrides_any_key_with_a_yaml_value(tmp_path):
    """--set rate=200 paces; --set consumers.processes=[1,8] sweeps; a new key is refused."""
    [(_, workload)] = load("throughput", ["rate=200", "consumers.processes=[1,8]"])
    assert [(c.rate, c.processes) for c in cells("throughput", workload)] == [
        (200.0, 1), (200.0, 8)]
    with pytest.raises(UsageError, match=r"throughput.yaml: colour: unknown key"):
        load("throughput", ["colour=blue"])
    [(_, short)] = load("throughput", ["consumers=4", "producers=[1,2]"])  # counts alone
    assert [(c.processes, c.producers) for c in cells("throughput", short)] == [(4, 1), (4, 2)]


@pytest.mark.parametrize(("text", "says"), [
    ("messages: 10\nconsumer: {processes: 2}\n", "mine.yaml: consumer: unknown key"),
    ("messages: 10\nconsumers: {processes: 0}\n",
     "mine.yaml: consumers.processes: Input should be greater than or equal to 1 (got 0)"),
    ("messages: ten\n", "mine.yaml: messages: Input should be a valid integer"),
    ("messages: 10\nrate: -5\n", "mine.yaml: rate: Input should be greater than 0 (got -5)"),
    ("messages: 10\nfaults: [{consumer: pause}]\n",
     "mine.yaml: faults.0.consumer: Input should be 'graceful' or 'kill' (got 'pause')"),
    ("payload: {format: json}\n", "mine.yaml: (top): messages is required"),
    ("messages: [\n", "mine.yaml is not valid YAML at line 2"),
    ("- a list\n", "mine.yaml must hold a mapping"),
])
def test_a_broken_experiment_file_is_one_line_naming_the_key(tmp_path, text, says):
    """`queuebench run FILE` with a bad key, type or value exits 2 with one line, no folder."""
    path = write(tmp_path, text)
    proc = run_cli("run", str(path), "--reports-dir", str(tmp_path / "reports"))
    assert proc.returncode == 2
    assert says in one_line_error(proc)
    assert not (tmp_path / "reports").exists()


def test_unknown_experiment_names_the_shipped_ones():
    with pytest.raises(UsageError, match="no experiment 'thruput'; shipped: broker-restart, "
                                         "burst, consumer-pause"):
        load("thruput")


def test_rate_shapes_give_intended_send_times():
    """A constant rate spaces messages 1/rate apart; the seed's bursts [messages, delay_ms]
    space each message delay_ms after the one before; unlimited has no schedule."""
    paced = cells("x", Workload(messages=5, rate=200))[0]
    assert paced.intended_offsets_ns() == [0, 5_000_000, 10_000_000, 15_000_000, 20_000_000]
    bursts = cells("x", Workload(rate={"stages": [[2, 20], [3, 0], [1, 10]]}))[0]
    assert bursts.messages == 6
    assert bursts.intended_offsets_ns() == [0, 20_000_000, 20_000_000, 20_000_000, 20_000_000,
                                            30_000_000]
    assert cells("x", Workload(messages=5))[0].intended_offsets_ns() is None


class Recorder:
    """A producer that keeps what it was given and when."""

    def __init__(self):
        self.sent: list[tuple[int, bytes]] = []

    def send(self, payload, *, key=None):
        self.sent.append((time.time_ns(), payload))

    def flush(self):
        pass

    def close(self):
        pass


def experiment(tmp_path, workload: Workload, recorder: Recorder | None = None) -> Experiment:
    adapter = adapters.create("sqlalchemy+sqlite:///q.sqlite", queue="q")
    if recorder:
        adapter.producer = lambda: recorder
    cell = cells("x", workload)[0]
    config = ExperimentConfig(cell.kind, "sqlalchemy+sqlite", "default", cell.format,
                              cell.messages, cell.records, cell.work_ms, 60.0)
    return Experiment(config, cell, adapter, record_batches("sqlite://", cell.records,
                                                            cell.messages), tmp_path)


def test_a_paced_producer_stamps_the_intended_time_and_keeps_the_rate(tmp_path):
    """At 100 msg/s, 30 messages take ~0.29 s, each stamped with its slot in the schedule (not
    when it went out), and each payload is the encoded records."""
    recorder = Recorder()
    run = experiment(tmp_path, Workload(messages=30, rate=100, payload={"records": 5}), recorder)
    produced = run.produce()
    first_ns = produced.first_ns
    assert 0.28 <= produced.seconds < 0.5
    envelopes = [unwrap(message) for _, message in recorder.sent]
    assert [e.sent_ns - first_ns for e in envelopes] == [seq * 10_000_000 for seq in range(30)]
    assert all(sent_at >= e.sent_ns for (sent_at, _), e in zip(recorder.sent, envelopes,
                                                               strict=True))
    assert all(e.payload_ok for e in envelopes)
    assert run.sizes == [len(bytes(e.payload)) for e in envelopes]


def test_consume_mb_s_counts_only_the_bytes_that_arrived(tmp_path, monkeypatch):
    """A run that received the 1 MB message of 4 MB sent, over 1 s, consumed 1 MB/s, not 4."""
    run = experiment(tmp_path, Workload(messages=2))
    run.sizes = [1_000_000, 3_000_000]
    monkeypatch.setattr(run.adapter, "backlog", lambda: Backlog(waiting=1, detail="1 queued"))
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    first_ns = 1_000_000_000
    (ledger / "receipts-1.log").write_text(
        f"{run.run_id} 0 {first_ns} {first_ns + 1_000_000_000} ok\n")
    m = phases.figures(run, outcome="deadline", started=time.monotonic(), produce_sec=0.5,
                       consumers_from_ns=first_ns, startup_sec=0.1, stop=None)
    assert (m["successful"], m["time_to_consume_sec"]) == (1, 1.0)
    assert (m["consume_throughput"], m["consume_mb_s"]) == (1.0, 1.0)
    assert m["produce_mb_s"] == 8.0  # everything was sent, in 0.5 s
    assert m["broker_check"]["agrees"] is False  # one still waits


def test_a_failed_attempt_is_counted_failed_and_not_consumed(tmp_path, monkeypatch):
    """With fail_fraction 0.5 of 2 messages, message 1 is meant to fail: its "failed" receipt
    makes it failed (not lost, not corrupt, not received), and the consume time, rate and bytes
    are those of the message whose handler returned."""
    run = experiment(tmp_path, Workload(messages=2, fail_fraction=0.5))
    run.sizes = [1_000_000, 3_000_000]
    monkeypatch.setattr(run.adapter, "backlog", lambda: Backlog(waiting=0, detail="empty"))
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    first_ns = 1_000_000_000
    (ledger / "receipts-1.log").write_text(
        f"{run.run_id} 0 {first_ns} {first_ns + 1_000_000_000} ok\n"
        f"{run.run_id} 1 {first_ns} {first_ns + 3_000_000_000} failed\n")
    m = phases.figures(run, outcome="complete", started=time.monotonic(), produce_sec=0.5,
                       consumers_from_ns=first_ns, startup_sec=0.1, stop=None)
    assert (m["successful"], m["lost"], m["corrupt"], m["failed_by_handler"]) == (1, 0, 0, 1)
    assert (m["failed"], m["failed_seqs"], m["meant_to_fail"]) == (1, [1], 1)
    assert m["unexpected_failures"] == 0
    assert (m["time_to_consume_sec"], m["consume_mb_s"]) == (1.0, 1.0)
    assert m["broker_check"]["agrees"] is True


def test_each_consumer_proves_ready_and_the_repeat_keeps_its_timeline_and_host_load(tmp_path):
    """Three stub consumers each handle a warm-up message before producing starts; the result
    holds the timeline in order, how busy the host was, and the per-second series."""
    from tests.test_stub import engine_run

    _, m = engine_run(tmp_path, Workload(messages=30, consumers={"processes": 3}))
    assert m["consumers_ready"] == 3 and m["successful"] == 30
    events = [event["event"] for event in m["timeline"]]
    assert events == ["first consumer ready", "3 of 3 consumer processes had a warm-up message",
                      "producing", "produced", "settled: complete"]
    assert [e["t"] for e in m["timeline"]] == sorted(e["t"] for e in m["timeline"])
    assert 0 <= m["host"]["cpu_busy_pct"] <= 100 and m["host"]["cores"] >= 1
    assert sum(m["series"]["sent"]) == sum(m["series"]["received"]) == 30
    assert m["series"]["backlog"][-1] == 0


def test_the_first_message_waits_until_the_consumer_group_settled(tmp_path, monkeypatch):
    """Where the broker hands each member a share of the queue (a Kafka group), a member that
    proved ready may still lose its share while others join: producing waits until the group
    settled, with every unit of every process a member, and startup counts until then."""
    from queuebench.adapters.stub import StubAdapter
    from tests.test_stub import engine_run

    asked = []

    def settles_on_the_fourth_look(self, members: int) -> str | None:
        asked.append(members)
        return None if len(asked) >= 4 else "rebalancing"

    monkeypatch.setattr(StubAdapter, "unsettled_group", settles_on_the_fourth_look)
    _, m = engine_run(tmp_path, Workload(messages=10, consumers={"processes": 2,
                                                                 "concurrency": 2}))
    assert set(asked) == {4}
    events = {e["event"]: e["t"] for e in m["timeline"]}
    warmed_up = "2 of 2 consumer processes had a warm-up message"
    assert list(events)[:4] == ["first consumer ready", warmed_up,
                                "consumer group settled: 4 members", "producing"]
    waited = events["consumer group settled: 4 members"] - events[warmed_up]
    assert waited >= 2 * phases.GROUP_POLL_SEC * 0.9  # two looks apart after the first
    assert m["consumer_startup_sec"] >= waited and m["successful"] == 10


def test_per_second_series_counts_each_message_once_from_its_intended_send():
    """Two messages meant at 0.2 s, received at 0.5 s and 1.5 s (one twice): one waits a second."""
    from queuebench.engine.ledger import Receipt, Receipts
    from queuebench.engine.phases import per_second

    s = 1_000_000_000
    receipts = Receipts.of([Receipt(1, s // 5, 2 * s, True), Receipt(0, s // 5, s // 2, True),
                            Receipt(1, s // 5, 3 * s // 2, True), Receipt(7, 0, s, True)])
    assert per_second(receipts, 0, messages=2) == {
        "sent": [2, 0], "received": [1, 1], "backlog": [1, 0]}


def test_a_worker_that_must_be_killed_at_the_end_leaves_the_repeat_measured(tmp_path,
                                                                             monkeypatch):
    """The stop after everything settled is cleanup: if it has to kill, the timeline says so and
    the figures stand (a graceful stop that is the experiment's fault still fails the repeat)."""
    from queuebench.engine.consumer import ConsumerFleet
    from queuebench.errors import ConsumerFailed
    from tests.test_stub import engine_run

    stop = ConsumerFleet.stop

    def stop_then_fail(self, *args, **kwargs):
        stop(self, *args, **kwargs)
        raise ConsumerFailed("stub+dir consumer ignored SIGTERM until it was killed")

    monkeypatch.setattr(ConsumerFleet, "stop", stop_then_fail)
    _, m = engine_run(tmp_path, Workload(messages=5))
    assert (m["outcome"], m["successful"]) == ("complete", 5)
    assert m["timeline"][-1]["event"] == ("final stop: stub+dir consumer ignored SIGTERM until "
                                          "it was killed")


def test_only_a_workload_that_never_stops_its_consumers_batches_receipts(tmp_path):
    """A kill loses a batch of receipts held in the worker: a reliability workload writes each
    receipt at once; a throughput workload batches them."""
    killed = experiment(tmp_path / "kill", Workload(messages=5, faults=[{"consumer": "kill"}]))
    unstopped = experiment(tmp_path / "throughput", Workload(messages=5))
    assert [m.config.batch_receipts for m in killed.consumers.members] == [False]
    assert [m.config.batch_receipts for m in unstopped.consumers.members] == [True]


def test_burst_figures_per_stage_from_send_and_receive_times():
    """Two light messages, four at once, two light: the burst stage holds the deepest backlog
    (4); latency is back within twice the first stage's p50 at the receipt of the last message
    (41 ms after the burst's send); the backlog is back to the first stage's depth 40 ms after."""
    from queuebench.engine.phases import stage_figures

    ms = 1_000_000
    send = [0, 20 * ms, 40 * ms, 40 * ms, 40 * ms, 40 * ms, 60 * ms, 80 * ms]
    received = [1 * ms, 21 * ms, 50 * ms, 60 * ms, 70 * ms, 80 * ms, 85 * ms, 81 * ms]
    f = stage_figures(((2, 20.0), (4, 0.0), (2, 20.0)), send, received, send)
    assert [s["deepest_backlog"] for s in f["stages"]] == [1, 4, 3]
    assert [s["latency_ms"]["p50"] for s in f["stages"]] == pytest.approx([1, 20, 1], rel=0.01)
    assert (f["heaviest_stage"], f["deepest_backlog"]) == (1, 4)
    assert (f["recovery_sec"], f["drained_sec"]) == (0.041, 0.04)


def test_cases_pair_values_and_settings_reach_every_case(tmp_path):
    """cases: two cases are two workloads (paired, not crossed); --set overrides each case's
    own value; a case with a bad key names the case."""
    path = write(tmp_path, "work_ms: [0, 5]\ncases:\n"
                 "  - {messages: 10, consumers: {concurrency: 2}}\n"
                 "  - {messages: 20, consumers: {concurrency: 4}}\n")
    got = [(c.messages, c.concurrency, c.work_ms) for n, w in load(str(path)) for c in cells(n, w)]
    assert got == [(10, 2, 0), (10, 2, 5), (20, 4, 0), (20, 4, 5)]
    [(_, one), (_, two)] = load(str(path), ["messages=7"])
    assert (one.messages, two.messages) == (7, 7)
    bad = write(tmp_path, "messages: 5\ncases: [{colour: red}]\n")
    with pytest.raises(UsageError, match=r"mine.yaml: cases\[0\]: colour: unknown key"):
        load(str(bad))


def test_a_payload_is_records_raw_bytes_or_a_mix_never_two():
    """bytes: cells of format raw with no records; a mix: one cell per format; both refused."""
    raw = cells("x", Workload(messages=3, payload={"bytes": [50, 500]}))
    assert [(c.format, c.records, c.payload_bytes) for c in raw] == [("raw", 0, 50),
                                                                     ("raw", 0, 500)]
    mixed = cells("x", Workload(messages=3, payload={
        "format": ["json", "protobuf"], "mix": [{"records": 1, "weight": 3},
                                                {"records": 10, "weight": 1}]}))
    assert [(c.format, c.record_counts) for c in mixed] == [("json", (1, 10)),
                                                           ("protobuf", (1, 10))]
    with pytest.raises(ValueError, match="give one of records, bytes and mix, not records and"):
        Workload(messages=3, payload={"records": 5, "bytes": 50})


def test_failed_messages_the_broker_keeps_agree_with_the_ledger():
    """RQ's failed registry and Dramatiq's dead letters hold the messages whose handler failed:
    stranded, and accounted for; one stranded more than lost and failed together disagrees."""
    from queuebench.engine.common import broker_check
    from queuebench.engine.ledger import Receipt, Receipts, tally

    failed_twice = tally(Receipts.of([Receipt(0, 0, 1, True), Receipt(1, 0, 1, True, failed=True),
                                      Receipt(2, 0, 1, True, failed=True)]), 3, 2 / 3)
    assert broker_check(Backlog(waiting=0, stranded=2), failed_twice)["agrees"] is True
    assert broker_check(Backlog(waiting=0, stranded=3), failed_twice)["agrees"] is False
    # Retries held back for later are the failed ones waiting: one dead letter and one retry
    # agree; a message waiting that is no retry does not.
    retry = Backlog(waiting=1, stranded=1, due_at=(time.time() + 60,))
    assert broker_check(retry, failed_twice)["agrees"] is True
    assert broker_check(Backlog(waiting=2, stranded=1, due_at=retry.due_at),
                        failed_twice)["agrees"] is False


def test_a_retry_due_after_a_moment_is_not_waiting_by_then():
    now = time.time()
    backlog = Backlog(waiting=3, due_at=(now + 1, now + 30))
    assert [backlog.waiting_by(now + s) for s in (0, 1, 29, 30)] == [1, 2, 2, 3]


def test_a_worker_that_exited_on_its_own_is_passed_over_by_the_fleets_stop_and_kill(tmp_path):
    """One of two workers died during a fault and awaits its revival (reaped, not running):
    the final stop and a kill reach the other and pass it over, as there is nothing to stop."""
    run = experiment(tmp_path, Workload(messages=1, consumers=2))
    fleet = run.consumers
    fleet.start()
    try:
        gone, other = fleet.members
        os.kill(gone.session_id, signal.SIGKILL)
        gone._require_process().wait()
        with pytest.raises(ConsumerFailed):
            gone.check_alive()
        assert not gone.started and other.started
        fleet.stop(timeout=30)
        assert not other.started
        fleet.start()
        fleet.kill()
    finally:
        fleet.ensure_stopped()
        run.close()


def test_a_worker_error_pushed_out_of_the_log_tail_by_its_message_still_leads_it():
    """SQLAlchemy follows its error line with the SQL and its parameters: the tail an error row
    quotes names the error all the same, and a tail that holds it is left as it is."""
    from queuebench.engine.consumer import log_tail

    log = ("starting\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
           "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked\n"
           "[SQL: UPDATE queuebench_messages SET visible_at=?\nFROM queuebench_messages\n"
           "WHERE queue = ?\nLIMIT ? OFFSET ?) RETURNING id, body]\n[parameters: (1, 2)]\n"
           "(Background on this error at: https://sqlalche.me/e/21/e3q8)\n")
    assert log_tail(log, 3) == ("sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) "
                                "database is locked | ... | LIMIT ? OFFSET ?) "
                                "RETURNING id, body] | [parameters: (1, 2)] | (Background on this "
                                "error at: https://sqlalche.me/e/21/e3q8)")
    assert log_tail("a\nValueError: bad\n", 5) == "a | ValueError: bad"


def scripted_search(outcomes: dict[float, list[bool]], **settings) -> tuple[tuple, list]:
    """search_rate from 100 msg/s, step 2, with each rate's probes passing or failing in the
    order `outcomes` gives (then passing); its answer and the rates probed, in order."""
    probed = []

    def probe(rate: float) -> bool:
        probed.append(rate)
        left = outcomes.get(rate, [])
        return left.pop(0) if left else True

    search = Search(start=100, step=2, **settings)
    return search_rate(search, 100, probe), probed


def test_a_rate_whose_probe_failed_once_is_probed_again_and_passes_on_a_majority():
    """A busy moment fails 200 msg/s's first probe: two more pass it, so the search goes on to
    400, which fails twice, and bisects between 200 and 400 (with one failure a rate, the
    first failure would have held the search below 200)."""
    (passed, failed, _), probed = scripted_search({200: [False, True, True],
                                                   400: [False, False]}, probes=4)
    assert probed == [100, 200, 200, 200, 400, 400, 300]
    assert (passed, failed) == (300, 400)
    (passed, failed, _), probed = scripted_search({200: [False, True, True],
                                                   400: [False, False]}, probes=4, fails=1)
    assert probed == [100, 200, 150, 175] and (passed, failed) == (175, 200)


def test_a_rate_fails_on_two_failed_probes_before_two_passed():
    """fail, pass, fail: the rate fails after three probes; fail, fail: after two, and the
    search steps down."""
    (passed, failed, _), probed = scripted_search({200: [False, True, False]}, probes=2)
    assert probed == [100, 200, 200, 200] and (passed, failed) == (100, 200)


def test_a_first_rate_that_fails_is_followed_by_one_rate_above_it_then_the_search_steps_down():
    """100 and 200 msg/s fail: the search steps down from 100 (not from 200) to 50."""
    answer, probed = scripted_search({100: [False, False], 200: [False, False]}, probes=3)
    assert probed == [100, 100, 200, 200, 50] and answer == (50, 100, 0)


def test_a_pair_that_fails_low_rates_only_is_searched_upwards_and_says_so():
    """A batch window fails 100 msg/s and passes 200: the search climbs from 200 to 800, which
    fails, bisects to 600, and reports 100 as the rate below that failed (before the fix the
    search stepped down from 100 and found nothing)."""
    answer, probed = scripted_search({100: [False, False], 50: [False, False],
                                      800: [False, False]}, probes=5)
    assert probed == [100, 100, 200, 400, 800, 800, 600]
    assert answer == (600, 800, 100)


def test_a_probe_over_the_p99_bound_says_by_how_much_in_tenths_of_a_ms():
    """The reason is read in a table cell: "p99 1,200.3 ms", not the histogram's 1200.319;
    a probe with no latency says so."""
    config = ExperimentConfig("throughput", "sqlalchemy+sqlite", "default", "json", 100, 1, 0,
                              60.0)
    probe = Result(config, "ok", {}, {"latency_ms": {"p99": 1200.319}, "lost": 0,
                                      "intended_rate": 100, "backlog_end_of_sending": 0})
    assert sustained(probe, 200) == {"sustained": False, "p99_ms": 1200.319,
                                     "why": "p99 1,200.3 ms over 200 ms"}
    probe.measurements["latency_ms"] = {}
    assert sustained(probe, 200)["why"] == "no p99 latency measured"
