"""The ledger decides lost and duplicated; its arithmetic must be exact."""

import os
import threading
import time
import uuid

import pytest

from queuebench.engine import reliability
from queuebench.engine.ledger import LedgerReader, Receipt, tally
from queuebench.worker.envelope import HEADER, unwrap, wrap
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
    result = tally(receipts(0, 1, 1, 1, 3), expected=5)
    assert result.lost == (2, 4)
    assert result.duplicates == (1,)
    assert result.duplicate_deliveries == 2
    assert result.received == 3
    assert result.loss_pct == 40.0


def test_tally_counts_unexpected_sequence_numbers_apart():
    """A receipt for a message never sent is not mistaken for a received one."""
    result = tally(receipts(0, 7), expected=2)
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
    assert reliability.sleep_until_mid_task(LedgerReader(tmp_path, str(run)), work_ms=400)
    assert time.time_ns() >= next_start[0] + 200_000_000
    thread.join()


def test_a_consumer_that_starts_no_task_is_stopped_as_it_is(tmp_path, monkeypatch):
    """No start within the give-up time: report that the stop found no task in hand."""
    monkeypatch.setattr(reliability, "MID_TASK_GIVE_UP_SEC", 0.05)
    assert not reliability.sleep_until_mid_task(LedgerReader(tmp_path, "run"), work_ms=40)
