"""The receipt ledger as the engine reads it: what every consumer process processed.

Each consumer process appends its receipts to a file of its own (`queuebench.worker.receipts`).
The engine merges the files: expected minus received is lost, received more than once is
duplicated, and the send and receive times give end-to-end latency. A message whose handler ran
and raised on purpose (fail_fraction: a "failed" line) is failed, not lost.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import resource
import time
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from queuebench.worker.failures import meant_to_fail
from queuebench.worker.receipts import FAILED, STARTED

RECEIPT_FILES = "receipts-*.log"
READ_CHUNK = 1 << 16
# A poll parses a file this much at a time: a million receipts (80 MB of lines) read at once would
# hold their text and its lines, several times the receipts themselves.
READ_LIMIT = 1 << 22
# A file created in the same mtime tick as the last listing leaves the folder's mtime as it was:
# list again until a listing started this long after the mtime it saw (ext4 ticks every few ms,
# ext3 and HFS+ every second, FAT every 2 s).
MTIME_GRANULARITY_NS = 2_000_000_000
# Descriptors kept open across polls, by every reader of this process: half the soft limit, so
# brokers' sockets and consumers' pipes keep room. Beyond it a file is reopened when it grew.
_soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
_MAX_OPEN_FILES = 1 << 20 if _soft_limit == resource.RLIM_INFINITY else _soft_limit // 2
_open_files = 0


@dataclass(frozen=True)
class Receipt:
    seq: int
    sent_ns: int
    received_ns: int
    ok: bool  # the payload arrived intact ("ok"), or not ("corrupt")
    failed: bool = False  # the handler ran and raised on purpose ("failed"); its payload was intact


# A receipt's status, as its column stores it.
OK, CORRUPT, FAILED_ATTEMPT = 0, 1, 2
STATUS_CODES = {"ok": OK, "corrupt": CORRUPT, FAILED: FAILED_ATTEMPT}  # any other: corrupt


class Receipts(Sequence[Receipt]):
    """Receipts kept column by column: a million take 25 MB here, 200 MB as objects. Indexing
    or iterating makes each Receipt when asked; the figures read the columns."""

    def __init__(self) -> None:
        self.seq = array("q")
        self.sent_ns = array("q")
        self.received_ns = array("q")
        self.status = bytearray()  # OK, CORRUPT or FAILED_ATTEMPT

    @classmethod
    def of(cls, receipts: Iterable[Receipt]) -> Receipts:
        kept = cls()
        for r in receipts:
            kept.append(r.seq, r.sent_ns, r.received_ns,
                        FAILED_ATTEMPT if r.failed else OK if r.ok else CORRUPT)
        return kept

    def append(self, seq: int, sent_ns: int, received_ns: int, status: int) -> None:
        self.seq.append(seq)
        self.sent_ns.append(sent_ns)
        self.received_ns.append(received_ns)
        self.status.append(status)

    def __len__(self) -> int:
        return len(self.seq)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        status = self.status[index]
        return Receipt(self.seq[index], self.sent_ns[index], self.received_ns[index],
                       ok=status != CORRUPT, failed=status == FAILED_ATTEMPT)

    def handled(self) -> Receipts:
        """The receipts of handlers that returned (a failed attempt left out)."""
        if FAILED_ATTEMPT not in self.status:
            return self
        kept = Receipts()
        for seq, sent, received, status in zip(self.seq, self.sent_ns, self.received_ns,
                                               self.status, strict=True):
            if status != FAILED_ATTEMPT:
                kept.append(seq, sent, received, status)
        return kept

    def distinct_seqs(self, below: int) -> bytearray:
        """seen[seq] is 1 for each sequence number 0..below-1 that has a receipt here."""
        seen = bytearray(below)
        for seq in self.seq:
            if 0 <= seq < below:
                seen[seq] = 1
        return seen


class LedgerReader:
    """Follows every consumer file of a ledger folder, reading only what was appended since.

    Each file is kept open and read from where the last poll stopped, so a poll with nothing new
    costs one `read` per file. The folder is listed again only when a file may have been added:
    when its mtime changed, or while the last listing was too close to that mtime to be sure a
    file created in the same mtime tick was seen. Files are only ever appended to (a file that is
    truncated or replaced under the same name is not noticed). Call `close()`, or use the reader
    as a context manager, to release the files; polling again afterwards reopens them.
    """

    def __init__(self, ledger_dir: Path, run_id: str) -> None:
        self.ledger_dir = ledger_dir
        self.run_id = run_id
        self.receipts = Receipts()
        self.last_start_ns = 0  # when the newest noted work began
        self._seen = bytearray()  # _seen[seq] is 1 once `receipts` holds one for seq
        self.distinct = 0  # distinct sequence numbers among `receipts`: the messages accounted
        # for, processed or failed by their handler
        self._files: list[_FollowedFile] = []  # sorted by name
        self._names: set[str] = set()
        self._listed_mtime_ns: int | None = None  # the folder's mtime when it was last listed
        self._listed_at_ns = 0  # the wall clock just before that listing

    def poll(self) -> Receipts:
        """Read new complete lines; a line still being written is left for the next poll."""
        if self._folder_may_have_new_files():
            self._list_folder()
        for followed in self._files:
            while data := followed.read_new():
                self._take(followed, data)
                if len(data) < READ_LIMIT:
                    break
        return self.receipts

    def close(self) -> None:
        for followed in self._files:
            followed.close()

    def __enter__(self) -> LedgerReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:  # a reader dropped unclosed (an experiment that failed)
        with contextlib.suppress(Exception):  # at interpreter exit `os` may be gone
            self.close()

    def _folder_may_have_new_files(self) -> bool:
        try:
            mtime_ns = os.stat(self.ledger_dir).st_mtime_ns
        except FileNotFoundError:  # no consumer has written yet
            return False
        return (mtime_ns != self._listed_mtime_ns
                or self._listed_at_ns - mtime_ns < MTIME_GRANULARITY_NS)

    def _list_folder(self) -> None:
        listed_at_ns = time.time_ns()
        try:
            mtime_ns = os.stat(self.ledger_dir).st_mtime_ns
            with os.scandir(self.ledger_dir) as entries:
                new = [entry.name for entry in entries
                       if entry.name not in self._names
                       and fnmatch.fnmatchcase(entry.name, RECEIPT_FILES) and entry.is_file()]
        except FileNotFoundError:
            return
        if new:
            self._names.update(new)
            self._files.extend(_FollowedFile(os.path.join(self.ledger_dir, name)) for name in new)
            self._files.sort(key=lambda followed: followed.path)
        self._listed_mtime_ns, self._listed_at_ns = mtime_ns, listed_at_ns

    def _take(self, followed: _FollowedFile, data: bytes) -> None:
        data = followed.pending + data
        end = data.rfind(b"\n") + 1
        followed.pending = data[end:]
        for line in data[:end].decode().splitlines():
            parts = line.split()
            if len(parts) != 5 or parts[0] != self.run_id:
                continue
            if parts[4] == STARTED:
                self.last_start_ns = max(self.last_start_ns, int(parts[3]))
            else:
                seq = int(parts[1])
                self.receipts.append(seq, int(parts[2]), int(parts[3]),
                                     STATUS_CODES.get(parts[4], CORRUPT))
                self._count(seq)

    def _count(self, seq: int) -> None:
        if seq >= len(self._seen):  # grown in steps: a run's sequence numbers come nearly in order
            self._seen.extend(bytes(max(seq + 1 - len(self._seen), len(self._seen))))
        if not self._seen[seq]:
            self._seen[seq] = 1
            self.distinct += 1


class _FollowedFile:
    """One consumer file: an open descriptor at the end of what was read, and a torn last line.

    While the process holds many descriptors (`_open_files` beyond half its limit, or `open`
    refused with EMFILE), a file is instead opened, read from its offset and closed on each poll
    that finds it grown.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self.offset = 0  # bytes read so far, `pending` included
        self.pending = b""  # the start of a line still being written

    def read_new(self) -> bytes:
        global _open_files
        if self.fd is None and _open_files < _MAX_OPEN_FILES:
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:  # removed: nothing more will come
                return b""
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE):
                    raise
            else:
                _open_files += 1
                os.lseek(self.fd, self.offset, os.SEEK_SET)
        if self.fd is not None:
            data = _read_some(self.fd)
        else:
            try:
                if os.stat(self.path).st_size <= self.offset:
                    return b""
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return b""
            try:
                os.lseek(fd, self.offset, os.SEEK_SET)
                data = _read_some(fd)
            finally:
                os.close(fd)
        self.offset += len(data)
        return data

    def close(self) -> None:
        global _open_files
        if self.fd is not None:
            fd, self.fd = self.fd, None
            _open_files -= 1
            os.close(fd)


def _read_some(fd: int) -> bytes:
    """Up to READ_LIMIT bytes from the descriptor's offset, fewer at the file's end."""
    chunks, size = [], 0
    while size < READ_LIMIT:
        chunk = os.read(fd, READ_CHUNK)
        chunks.append(chunk)
        size += len(chunk)
        if len(chunk) < READ_CHUNK:  # a short read of a regular file: its end, for now
            break
    return b"".join(chunks) if len(chunks) > 1 else chunks[0]


@dataclass(frozen=True)
class Tally:
    """The ledger's verdict over messages 0..expected-1.

    Each message is exactly one of: received (its handler returned at least once), failed (its
    handler ran and raised, on every delivery that reached it) or lost (it never reached a
    handler). A message meant to fail whose failed receipt is there is accounted for, not lost.
    """

    expected: int
    received: int  # distinct sequence numbers with an "ok" or "corrupt" receipt
    lost: tuple[int, ...]
    duplicates: tuple[int, ...]  # sequence numbers received more than once (each listed once)
    duplicate_deliveries: int  # extra deliveries beyond the first (failed attempts not counted)
    corrupt: int
    unexpected: int  # receipts with a sequence number that was never sent
    failed: tuple[int, ...] = ()  # a failed receipt and none that returned
    failed_attempts: int = 0  # every failed receipt, retries of one message included
    meant_to_fail: int = 0  # of the expected messages, how many the handler was meant to fail
    # Failed receipts of messages not meant to fail: a bug in the handler or in the fraction the
    # engine and the consumers were given, never a library's doing.
    unexpected_failures: tuple[int, ...] = ()

    @property
    def loss_pct(self) -> float:
        return 100.0 * len(self.lost) / self.expected if self.expected else 0.0


def tally(receipts: Receipts, expected: int, fail_fraction: float = 0.0) -> Tally:
    """Lost, duplicated, corrupt and failed among messages 0..expected-1.

    Failed receipts count as attempts, not deliveries: a failing message retried three times is
    one failed message with three failed attempts, not a duplicate. With no failed receipts
    (fail_fraction 0) the verdict is the one before failures existed.
    """
    counts, failures = array("q", bytes(8 * expected)), array("q", bytes(8 * expected))
    unexpected = 0
    for seq, status in zip(receipts.seq, receipts.status, strict=True):
        if not 0 <= seq < expected:
            unexpected += 1
        elif status == FAILED_ATTEMPT:
            failures[seq] += 1
        else:
            counts[seq] += 1
    sent = range(expected)
    return Tally(
        expected=expected,
        received=expected - counts.count(0),
        lost=tuple(seq for seq in sent if not counts[seq] and not failures[seq]),
        duplicates=tuple(seq for seq in sent if counts[seq] > 1),
        duplicate_deliveries=sum(n - 1 for n in counts if n > 1),
        corrupt=receipts.status.count(CORRUPT),
        unexpected=unexpected,
        failed=tuple(seq for seq in sent if failures[seq] and not counts[seq]),
        failed_attempts=sum(failures),
        meant_to_fail=sum(1 for seq in sent if meant_to_fail(seq, fail_fraction)),
        unexpected_failures=tuple(seq for seq in sent if failures[seq]
                                  and not meant_to_fail(seq, fail_fraction)),
    )
