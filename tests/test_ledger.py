"""The ledger decides lost and duplicated; its arithmetic must be exact."""

import itertools
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from queuebench.engine import ledger, phases
from queuebench.engine.common import check_tally, delivery_figures
from queuebench.engine.ledger import LedgerReader, Receipt, Receipts, tally
from queuebench.worker import handler
from queuebench.worker import receipts as receipt_writer
from queuebench.worker.envelope import HEADER, unwrap, wrap
from queuebench.worker.failures import HandlerFailed, meant_to_fail
from queuebench.worker.handler import CONFIG_ENV, ConsumerConfig
from queuebench.worker.receipts import ReceiptWriter


def receipts(*seqs: int) -> list[Receipt]:
    return [Receipt(seq, 0, 1, True) for seq in seqs]


def test_envelope_round_trip_keeps_run_seq_and_send_time():
    """wrap stamps the run id, sequence and send time; unwrap reads them back."""
    run = uuid.uuid4()
    envelope = unwrap(wrap(run, 41, b"\x00\xffpayload"))
    assert envelope.run_id == str(run)
    assert envelope.seq == 41
    assert envelope.sent_ns > 0
    assert envelope.payload_ok


def test_truncated_payload_is_marked_corrupt():
    """A payload that lost bytes on the way is flagged, not counted as fine."""
    message = wrap(uuid.uuid4(), 0, b"abcdef")
    assert not unwrap(message[:-1]).payload_ok


def test_flipped_bits_of_the_same_length_are_counted_corrupt(tmp_path):
    """A payload whose bytes changed on the way, its length intact, is corrupt, not fine."""
    run = uuid.uuid4()
    message = bytearray(wrap(run, 0, b"abcdef"))
    message[HEADER.size + 2] ^= 0b0000_0100  # one bit of the payload's third byte
    message = bytes(message)
    assert len(message) == len(wrap(run, 0, b"abcdef"))
    envelope = unwrap(message)
    assert not envelope.payload_ok
    writer = ReceiptWriter(tmp_path)
    writer.write(envelope, 10)
    writer.write(unwrap(wrap(run, 1, b"abcdef")), 11)  # an intact one beside it
    lines = (tmp_path / f"receipts-{os.getsid(0)}.log").read_text().splitlines()
    assert [line.split()[4] for line in lines] == ["corrupt", "ok"]
    result = tally(LedgerReader(tmp_path, str(run)).poll(), expected=2)
    assert result.corrupt == 1
    assert result.received == 2 and result.lost == ()


def test_foreign_bytes_are_rejected():
    """A message that is not ours raises instead of producing a bogus receipt."""
    with pytest.raises(ValueError, match="not a queuebench message"):
        unwrap(b"x" * HEADER.size)


def test_tally_counts_lost_and_duplicates():
    """Expected minus received is lost; a sequence seen twice is one extra delivery."""
    result = tally(Receipts.of(receipts(0, 1, 1, 1, 3)), expected=5)
    assert result.lost == (2, 4)
    assert result.duplicates == (1,)
    assert result.duplicate_deliveries == 2
    assert result.received == 3
    assert result.loss_pct == 40.0


def test_tally_counts_unexpected_sequence_numbers_apart():
    """A receipt for a message never sent is not mistaken for a received one."""
    result = tally(Receipts.of(receipts(0, 7)), expected=2)
    assert result.lost == (1,)
    assert result.unexpected == 1


def test_reader_merges_processes_and_skips_other_runs(tmp_path):
    """Receipts of every consumer file are merged; another run's receipts are ignored."""
    run, other = uuid.uuid4(), uuid.uuid4()
    writer = ReceiptWriter(tmp_path)
    writer.write(unwrap(wrap(run, 0, b"a")), 10)
    writer.write(unwrap(wrap(other, 1, b"b")), 11)
    (tmp_path / "receipts-999999.log").write_text(f"{run} 1 5 12 ok\n")
    reader = LedgerReader(tmp_path, str(run))
    assert sorted(r.seq for r in reader.poll()) == [0, 1]


def test_reader_waits_for_a_line_being_written(tmp_path):
    """A torn last line (a SIGKILL mid-write) is not read until it is complete."""
    run = str(uuid.uuid4())
    path = tmp_path / "receipts-1.log"
    path.write_text(f"{run} 0 1 2 ok\n{run} 1 1 ")
    reader = LedgerReader(tmp_path, run)
    assert [r.seq for r in reader.poll()] == [0]
    with path.open("a") as f:
        f.write("2 ok\n")
    assert [r.seq for r in reader.poll()] == [0, 1]


def test_writer_is_unbuffered(tmp_path):
    """Each receipt is on disk as soon as write returns (what survives a SIGKILL)."""
    writer = ReceiptWriter(tmp_path)
    writer.write(unwrap(wrap(uuid.uuid4(), 3, b"")), 1)
    path = tmp_path / f"receipts-{os.getsid(0)}.log"
    assert path.read_text().split()[1] == "3"


def test_a_noted_start_is_not_a_receipt(tmp_path):
    """Work that began but did not end counts as not received; only its start time is kept."""
    run = uuid.uuid4()
    writer = ReceiptWriter(tmp_path)
    writer.write(unwrap(wrap(run, 0, b"a")), 10)
    writer.started(unwrap(wrap(run, 1, b"b")), 20)
    reader = LedgerReader(tmp_path, str(run))
    assert [r.seq for r in reader.poll()] == [0]
    assert reader.last_start_ns == 20


def test_a_stop_is_aimed_at_the_middle_of_the_next_task(tmp_path):
    """The newest start's midpoint has passed, so the runner waits for the next start."""
    run = uuid.uuid4()
    writer = ReceiptWriter(tmp_path)
    writer.started(unwrap(wrap(run, 0, b"")), time.time_ns() - 500_000_000)  # ended already
    next_start = []

    def start_next_task():
        time.sleep(0.1)
        next_start.append(time.time_ns())
        writer.started(unwrap(wrap(run, 1, b"")), next_start[0])

    thread = threading.Thread(target=start_next_task)
    thread.start()
    assert phases.sleep_until_mid_task(LedgerReader(tmp_path, str(run)), work_ms=400)
    assert time.time_ns() >= next_start[0] + 200_000_000
    thread.join()


def test_a_consumer_that_starts_no_task_is_stopped_as_it_is(tmp_path, monkeypatch):
    """No start within the give-up time: report that the stop found no task in hand."""
    monkeypatch.setattr(phases, "MID_TASK_GIVE_UP_SEC", 0.05)
    assert not phases.sleep_until_mid_task(LedgerReader(tmp_path, "run"), work_ms=40)


def _line(run, seq: int, status: str = "ok", received_ns: int = 2) -> str:
    return f"{run} {seq} 1 {received_ns} {status}\n"


def _age_folder(folder, seconds: float = 10.0) -> None:
    """Set the folder's mtime back, as in a run whose consumer files were made a while ago."""
    aged = time.time() - seconds
    os.utime(folder, (aged, aged))


def test_a_line_written_in_two_halves_across_polls_is_read_once_whole(tmp_path):
    """The first half is kept back, not lost or read twice, until its newline arrives."""
    run = str(uuid.uuid4())
    path = tmp_path / "receipts-1.log"
    first, second = _line(run, 7, received_ns=123)[:12], _line(run, 7, received_ns=123)[12:]
    path.write_text(_line(run, 0) + first)
    reader = LedgerReader(tmp_path, run)
    assert [r.seq for r in reader.poll()] == [0]
    assert [r.seq for r in reader.poll()] == [0]  # still torn
    with path.open("a") as f:
        f.write(second)
    assert [(r.seq, r.received_ns, r.ok) for r in reader.poll()] == [(0, 2, True), (7, 123, True)]
    assert len(reader.poll()) == 2
    assert reader.distinct == 2


def test_a_consumer_file_made_after_the_first_poll_is_read(tmp_path):
    """A consumer that starts later (its own file) is found on a later poll."""
    run = str(uuid.uuid4())
    (tmp_path / "receipts-1.log").write_text(_line(run, 0))
    reader = LedgerReader(tmp_path, run)
    assert [r.seq for r in reader.poll()] == [0]
    (tmp_path / "receipts-2.log").write_text(_line(run, 1))
    assert sorted(r.seq for r in reader.poll()) == [0, 1]


def test_a_file_made_in_the_same_mtime_tick_as_the_last_listing_is_read(tmp_path, monkeypatch):
    """On a file system whose mtime ticks coarsely, a file made just after the reader listed the
    folder leaves its mtime unchanged: the reader lists a recently changed folder again."""
    monkeypatch.setattr(ledger, "MTIME_GRANULARITY_NS", 60 * 10**9)  # a slow machine won't outwait
    run = str(uuid.uuid4())
    (tmp_path / "receipts-1.log").write_text(_line(run, 0))
    listed_mtime = os.stat(tmp_path).st_mtime_ns
    reader = LedgerReader(tmp_path, run)
    assert [r.seq for r in reader.poll()] == [0]
    (tmp_path / "receipts-2.log").write_text(_line(run, 1))
    os.utime(tmp_path, ns=(listed_mtime, listed_mtime))  # the same tick: mtime as it was
    assert sorted(r.seq for r in reader.poll()) == [0, 1]


def test_an_idle_poll_neither_lists_the_folder_nor_reopens_files(tmp_path, monkeypatch):
    """Once the folder is old and the files open, a poll only reads what was appended."""
    run = str(uuid.uuid4())
    for n in range(3):
        (tmp_path / f"receipts-{n}.log").write_text(_line(run, n))
    _age_folder(tmp_path)
    reader = LedgerReader(tmp_path, run)
    assert len(reader.poll()) == 3
    calls = []
    monkeypatch.setattr(os, "scandir", lambda *a: calls.append("scandir") or [])
    monkeypatch.setattr(os, "open", lambda *a: calls.append("open") or -1)
    with (tmp_path / "receipts-1.log").open("a") as f:
        f.write(_line(run, 3))
    for _ in range(3):
        reader.poll()
    assert sorted(r.seq for r in reader.receipts) == [0, 1, 2, 3]
    assert calls == []
    reader.close()


def test_the_distinct_count_runs_with_duplicates_across_files_and_polls(tmp_path):
    """A message received twice (in one file or two, corrupt or not) counts once."""
    run = str(uuid.uuid4())
    (tmp_path / "receipts-1.log").write_text(_line(run, 0) + _line(run, 1) + _line(run, 1))
    reader = LedgerReader(tmp_path, run)
    reader.poll()
    assert reader.distinct == 2
    (tmp_path / "receipts-2.log").write_text(_line(run, 0) + _line(run, 2, "corrupt"))
    with (tmp_path / "receipts-1.log").open("a") as f:
        f.write(_line(run, 2) + _line(run, 9, "started"))
    reader.poll()
    assert len(reader.receipts) == 6
    assert reader.distinct == 3 == len({r.seq for r in reader.receipts})


def test_lines_of_another_run_are_ignored_as_they_arrive(tmp_path):
    """Another run's receipts and starts, in a file of its own or beside ours, count for nothing."""
    run, other = str(uuid.uuid4()), str(uuid.uuid4())
    (tmp_path / "receipts-1.log").write_text(_line(run, 0) + _line(other, 1))
    reader = LedgerReader(tmp_path, run)
    reader.poll()
    (tmp_path / "receipts-2.log").write_text(_line(other, 5) + _line(other, 6, "started", 99))
    with (tmp_path / "receipts-1.log").open("a") as f:
        f.write(_line(other, 2) + _line(run, 3))
    assert [r.seq for r in reader.poll()] == [0, 3]
    assert reader.distinct == 2
    assert reader.last_start_ns == 0


def test_noted_starts_move_the_newest_start_forward_only(tmp_path):
    """A start noted after the first poll updates last_start_ns; an older one elsewhere does not."""
    run = str(uuid.uuid4())
    (tmp_path / "receipts-1.log").write_text(_line(run, 0, "started", 100))
    reader = LedgerReader(tmp_path, run)
    reader.poll()
    assert reader.last_start_ns == 100
    with (tmp_path / "receipts-1.log").open("a") as f:
        f.write(_line(run, 0, "ok", 150) + _line(run, 1, "started", 200))
    (tmp_path / "receipts-2.log").write_text(_line(run, 9, "started", 50))
    assert [r.seq for r in reader.poll()] == [0]
    assert reader.last_start_ns == 200


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_the_reader_lets_go_of_its_files(tmp_path):
    """close(), the context manager and check_tally release every file; polling again after
    close() goes on from where it was."""
    run = str(uuid.uuid4())
    for n in range(5):
        (tmp_path / f"receipts-{n}.log").write_text(_line(run, n))
    before = _open_descriptors()
    reader = LedgerReader(tmp_path, run)
    reader.poll()
    assert _open_descriptors() == before + 5
    reader.close()
    assert _open_descriptors() == before
    with (tmp_path / "receipts-0.log").open("a") as f:
        f.write(_line(run, 5))
    with reader:
        assert sorted(r.seq for r in reader.poll()) == [0, 1, 2, 3, 4, 5]
    assert _open_descriptors() == before
    experiment = SimpleNamespace(ledger=LedgerReader(tmp_path, run),
                                 cell=SimpleNamespace(messages=6, fail_fraction=0.0))
    received, result = check_tally(experiment)
    assert len(received) == 6 and result.lost == ()
    assert _open_descriptors() == before
    dropped = LedgerReader(tmp_path, run)
    dropped.poll()
    del dropped
    assert _open_descriptors() == before


def test_beyond_its_descriptor_budget_the_reader_reopens_files(tmp_path, monkeypatch):
    """With more files than descriptors it may keep, it still reads each line once."""
    monkeypatch.setattr(ledger, "_MAX_OPEN_FILES", ledger._open_files + 1)
    run = str(uuid.uuid4())
    for n in range(3):
        (tmp_path / f"receipts-{n}.log").write_text(_line(run, n))
    reader = LedgerReader(tmp_path, run)
    assert sorted(r.seq for r in reader.poll()) == [0, 1, 2]
    with (tmp_path / "receipts-2.log").open("a") as f:
        f.write(_line(run, 3)[:5])
    reader.poll()
    with (tmp_path / "receipts-2.log").open("a") as f:
        f.write(_line(run, 3)[5:])
    assert sorted(r.seq for r in reader.poll()) == [0, 1, 2, 3]
    assert sum(f.fd is not None for f in reader._files) == 1
    reader.close()


# Failures on purpose (fail_fraction): which messages, their receipts, and the tally.

def failed(*seqs: int) -> list[Receipt]:
    return [Receipt(seq, 0, 1, True, failed=True) for seq in seqs]


@pytest.mark.parametrize("fraction", [0.2, 0.29, 0.5, 1 / 3, 0.07, 1.0])
def test_meant_to_fail_picks_floor_of_n_times_the_fraction_spread_evenly(fraction):
    """Of every first N messages exactly floor(N * fraction) are meant to fail (the decimal as
    written: 0.29 of 100 is 29, not the 28 that float arithmetic gives), spread evenly, and
    message 0 only when all fail."""
    from fractions import Fraction

    picks = [seq for seq in range(1000) if meant_to_fail(seq, fraction)]
    for n in (1, 7, 20, 100, 1000):
        assert sum(1 for seq in picks if seq < n) == int(n * Fraction(repr(fraction)))
    gaps = {b - a for a, b in itertools.pairwise(picks)}
    assert max(gaps) - min(gaps) <= 1  # evenly spread: gaps differ by one at most
    assert (0 in picks) == (fraction == 1.0)


def test_meant_to_fail_20_messages_at_0_2_is_4_5_and_none_at_0():
    assert [seq for seq in range(20) if meant_to_fail(seq, 0.2)] == [4, 9, 14, 19]
    assert not any(meant_to_fail(seq, 0.0) for seq in range(1000))


def test_a_failed_handler_is_accounted_for_not_lost():
    """Messages meant to fail (4, 9) whose failed receipts are there are failed, not lost or
    received; every message is exactly one of received, failed or lost."""
    got = receipts(*(seq for seq in range(10) if seq not in (4, 9))) + failed(4, 9)
    result = tally(Receipts.of(got), expected=10, fail_fraction=0.2)
    assert result.failed == (4, 9)
    assert result.lost == ()
    assert result.received == 8
    assert result.failed_attempts == 2 and result.meant_to_fail == 2
    assert result.unexpected_failures == () and result.corrupt == 0
    assert result.received + len(result.failed) + len(result.lost) == result.expected


def test_a_message_meant_to_fail_that_never_ran_is_lost():
    """No receipt at all for message 4 (meant to fail): it never reached a handler: lost."""
    result = tally(Receipts.of(receipts(0, 1, 2, 3)), expected=5, fail_fraction=0.2)
    assert result.lost == (4,)
    assert result.failed == ()
    assert result.meant_to_fail == 1


def test_retries_of_a_failing_message_are_attempts_not_duplicates():
    """Message 4 failed three times (a library that retries): one failed message, three failed
    attempts, and no duplicate delivery."""
    result = tally(Receipts.of(receipts(0, 1, 2, 3) + failed(4, 4, 4)), expected=5,
                   fail_fraction=0.2)
    assert result.failed == (4,)
    assert result.failed_attempts == 3
    assert result.duplicates == () and result.duplicate_deliveries == 0
    assert result.unexpected == 0


def test_a_failure_of_a_message_not_meant_to_fail_is_a_bug_on_its_own_line():
    """Message 2 is not among the 20% meant to fail: its failed receipt is counted apart."""
    result = tally(Receipts.of(receipts(0, 1, 3) + failed(2, 4)), expected=5, fail_fraction=0.2)
    assert result.unexpected_failures == (2,)
    assert result.failed == (2, 4)
    assert result.lost == ()


def test_a_failed_then_processed_message_is_received_not_failed():
    """A failed attempt followed by one that returned (a retry that succeeded) is received."""
    result = tally(Receipts.of(failed(1) + receipts(0, 1)), expected=2, fail_fraction=0.5)
    assert result.received == 2 and result.failed == ()
    assert result.failed_attempts == 1 and result.duplicate_deliveries == 0


def test_the_tally_without_failures_is_what_it_was():
    """fail_fraction 0, the default: the same verdict as before failures existed."""
    plain = tally(Receipts.of(receipts(0, 1, 1, 1, 3)), expected=5)
    assert plain == tally(Receipts.of(receipts(0, 1, 1, 1, 3)), expected=5, fail_fraction=0.0)
    assert (plain.lost, plain.duplicates, plain.duplicate_deliveries) == ((2, 4), (1,), 2)
    assert (plain.failed, plain.failed_attempts, plain.meant_to_fail,
            plain.unexpected_failures) == ((), 0, 0, ())


def test_the_reader_takes_a_failed_line_as_a_failed_attempt(tmp_path):
    """A "failed" line is a receipt of a failed attempt: not corrupt, not a start, and it
    accounts for its message in the distinct count the engine waits on."""
    run = str(uuid.uuid4())
    (tmp_path / "receipts-1.log").write_text(_line(run, 0) + _line(run, 1, "failed", 7)
                                             + _line(run, 1, "failed", 9))
    reader = LedgerReader(tmp_path, run)
    assert [(r.seq, r.ok, r.failed) for r in reader.poll()] == [
        (0, True, False), (1, True, True), (1, True, True)]
    assert reader.distinct == 2
    result = tally(reader.receipts, expected=2, fail_fraction=0.5)
    assert result.failed == (1,) and result.corrupt == 0 and result.failed_attempts == 2


def test_delivery_figures_keep_the_seed_meaning_of_failed():
    """The seed's `failed` is every message not processed successfully: lost plus failed by
    the handler, so total = successful + failed; latency is of handlers that returned."""
    got = receipts(0, 1) + failed(2) + [Receipt(2, 0, 10**12, True, failed=True)]
    m = delivery_figures(Receipts.of(got), tally(Receipts.of(got), expected=5, fail_fraction=0.4))
    assert (m["total"], m["successful"], m["failed"], m["lost"]) == (5, 2, 3, 2)
    assert m["total"] == m["successful"] + m["failed"]
    assert (m["failed_by_handler"], m["failed_seqs"], m["failed_attempts"]) == (1, [2], 2)
    assert m["meant_to_fail"] == 2 and m["unexpected_failures"] == 0
    assert m["latency_ms"]["max"] < 1  # the slow failed attempt is not a delivery


def test_check_tally_uses_the_cells_fail_fraction(tmp_path):
    """check_tally hands the cell's fail_fraction to the tally and returns only the receipts
    of handlers that returned (what the consume rates are taken over)."""
    run = str(uuid.uuid4())
    lines = [_line(run, seq, "failed" if seq in (4, 9) else "ok") for seq in range(10)]
    (tmp_path / "receipts-1.log").write_text("".join(lines))
    experiment = SimpleNamespace(ledger=LedgerReader(tmp_path, run),
                                 cell=SimpleNamespace(messages=10, fail_fraction=0.2))
    returned, result = check_tally(experiment)
    assert sorted(r.seq for r in returned) == [0, 1, 2, 3, 5, 6, 7, 8]
    assert (result.meant_to_fail, result.failed, result.unexpected_failures) == (2, (4, 9), ())


def test_the_handler_writes_a_failed_receipt_then_raises(tmp_path, monkeypatch):
    """A message meant to fail: its work is done, a "failed" line is written, and HandlerFailed
    is raised for the library; the others get their "ok" receipt and return."""
    config = ConsumerConfig("stub+dir:///x", "q", "default", str(tmp_path), work_ms=1,
                            fail_fraction=0.5)
    monkeypatch.setenv(CONFIG_ENV, config.to_env()[CONFIG_ENV])
    handler.consumer_config.cache_clear()
    monkeypatch.setattr(handler, "_writers", {})
    try:
        run = uuid.uuid4()
        handler.handle(wrap(run, 0, b"a"))
        with pytest.raises(HandlerFailed, match="message 1 is meant to fail"):
            handler.handle(wrap(run, 1, b"b"))
        corrupt = bytearray(wrap(run, 3, b"cd"))
        corrupt[-1] ^= 1
        handler.handle(bytes(corrupt))  # meant to fail, but corrupt says more: not raised
    finally:
        handler.consumer_config.cache_clear()
    lines = (tmp_path / f"receipts-{os.getsid(0)}.log").read_text().splitlines()
    assert [(line.split()[1], line.split()[4]) for line in lines] == [
        ("0", "started"), ("0", "ok"), ("1", "started"), ("1", "failed"),
        ("3", "started"), ("3", "corrupt")]


def receipt_lines(folder) -> list[str]:
    path = folder / f"receipts-{os.getsid(0)}.log"
    return path.read_text().splitlines() if path.exists() else []


def test_a_batched_writer_writes_once_a_batch_is_full(tmp_path, monkeypatch):
    """Batched receipts are held until BATCH_LINES are, then written together and read whole."""
    monkeypatch.setattr(receipt_writer, "BATCH_MAX_AGE_SEC", 60.0)  # only the size flushes here
    run = uuid.uuid4()
    writer = ReceiptWriter(tmp_path, batched=True)
    for seq in range(receipt_writer.BATCH_LINES - 1):
        writer.write(unwrap(wrap(run, seq, b"a")), 10 + seq)
    assert receipt_lines(tmp_path) == []
    writer.write(unwrap(wrap(run, receipt_writer.BATCH_LINES - 1, b"a")), 5)
    reader = LedgerReader(tmp_path, str(run))
    assert [r.seq for r in reader.poll()] == list(range(receipt_writer.BATCH_LINES))
    writer.close()


def test_a_batched_writer_flushes_what_it_holds_within_its_age(tmp_path):
    """A receipt short of a full batch is written by the flusher, without another receipt."""
    run = uuid.uuid4()
    writer = ReceiptWriter(tmp_path, batched=True)
    writer.write(unwrap(wrap(run, 7, b"a")), 10)
    reader = LedgerReader(tmp_path, str(run))
    give_up = time.monotonic() + 10  # far beyond BATCH_MAX_AGE_SEC: a bound, not a timing
    while not reader.poll() and time.monotonic() < give_up:
        time.sleep(receipt_writer.BATCH_MAX_AGE_SEC)
    assert [r.seq for r in reader.receipts] == [7]
    writer.close()


def test_the_reader_reads_batches_of_two_processes_appending_to_one_file(tmp_path):
    """Batches from two descriptors on one file (a worker and its fork) and a batch torn at its
    end are read as the whole lines they hold, each once."""
    run = str(uuid.uuid4())
    path = tmp_path / "receipts-1.log"
    first, second = (os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT) for _ in range(2))
    os.write(first, "".join(f"{run} {seq} 1 2 ok\n" for seq in range(0, 3)).encode())
    os.write(second, "".join(f"{run} {seq} 1 2 ok\n" for seq in range(3, 6)).encode())
    os.write(first, f"{run} 6 1 2 ok\n{run} 7 1 ".encode())  # killed mid-write
    reader = LedgerReader(tmp_path, run)
    assert sorted(r.seq for r in reader.poll()) == list(range(7))
    os.write(first, b"2 ok\n")
    assert sorted(r.seq for r in reader.poll()) == list(range(8))
    os.close(first)
    os.close(second)


EXIT_SCRIPT = """
import os, signal, sys, uuid
from pathlib import Path
from queuebench.worker import handler, receipts
from queuebench.worker.envelope import wrap
receipts.BATCH_MAX_AGE_SEC = 60.0  # only a full batch or the exit writes
handler.handle(wrap(uuid.UUID(sys.argv[1]), 0, b"a"))
handler.handle(wrap(uuid.UUID(sys.argv[1]), 1, b"b"))
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


def consumer_exits(tmp_path, *, batch_receipts: bool, how: str) -> list[int]:
    """Run the handler on two messages in a consumer-like process (a session of its own), which
    then exits or is killed; return the sequence numbers the ledger reads."""
    run = uuid.uuid4()
    config = ConsumerConfig("stub+dir:///x", "q", "default", str(tmp_path), work_ms=0,
                            batch_receipts=batch_receipts)
    subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(run), how], start_new_session=True,
                   env={**os.environ, **config.to_env()}, check=False, timeout=60)
    return sorted(r.seq for r in LedgerReader(tmp_path, str(run)).poll())


def test_a_consumer_with_batched_receipts_writes_them_when_it_exits(tmp_path):
    """What a batch holds at a normal exit (a graceful stop) is written then."""
    assert consumer_exits(tmp_path, batch_receipts=True, how="exit") == [0, 1]


def test_a_killed_consumer_loses_no_receipt_without_batching(tmp_path):
    """A workload that kills its consumers writes each receipt at once: a kill loses none.
    With batching, the same kill loses what the batch held, which is why such workloads keep
    it off."""
    assert consumer_exits(tmp_path / "each", batch_receipts=False, how="kill") == [0, 1]
    assert consumer_exits(tmp_path / "batched", batch_receipts=True, how="kill") == []


def fork_and_report(child: Callable[[], bool]) -> bool:
    """`child()`'s answer, computed in a process forked from this one."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer and leave without running the parent's exit hooks
        os.write(write, b"1" if child() else b"0")
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    answer = os.read(read, 1)
    os.close(read)
    return answer == b"1"


def test_only_processes_whose_exit_runs_python_hooks_batch(tmp_path):
    """The consumer's own process (a session leader) and multiprocessing's children batch; a
    child forked by other means (RQ's work horse) may end in os._exit, so it does not."""
    leader = subprocess.run(
        [sys.executable, "-c", "from queuebench.worker.receipts import exits_through_python as "
         "e; print(e())"], start_new_session=True, capture_output=True, text=True, check=True)
    assert leader.stdout.strip() == "True"
    assert not fork_and_report(receipt_writer.exits_through_python)
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        assert pool.apply(receipt_writer.exits_through_python)


def test_a_poll_reads_a_file_larger_than_one_parse_slice_to_its_end(tmp_path, monkeypatch):
    """A poll parses a few MB at a time but still reads every complete line there is, the line
    torn across two slices included."""
    monkeypatch.setattr(ledger, "READ_LIMIT", ledger.READ_CHUNK)
    run = str(uuid.uuid4())
    (tmp_path / "receipts-1.log").write_text("".join(_line(run, seq) for seq in range(5000)))
    assert (tmp_path / "receipts-1.log").stat().st_size > 3 * ledger.READ_LIMIT
    reader = LedgerReader(tmp_path, run)
    assert list(reader.poll().seq) == list(range(5000)) and reader.distinct == 5000
