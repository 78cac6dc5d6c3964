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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from queuebench.worker.failures import meant_to_fail
from queuebench.worker.receipts import FAILED, STARTED

RECEIPT_FILES = "receipts-*.log"
READ_CHUNK = 1 << 16
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
        self.receipts: list[Receipt] = []
        self.last_start_ns = 0  # when the newest noted work began
        self._seqs: set[int] = set()  # distinct sequence numbers among `receipts`
        self._files: list[_FollowedFile] = []  # sorted by name
        self._names: set[str] = set()
        self._listed_mtime_ns: int | None = None  # the folder's mtime when it was last listed
        self._listed_at_ns = 0  # the wall clock just before that listing

    @property
    def distinct(self) -> int:
        """How many distinct sequence numbers the receipts read so far carry: the messages
        accounted for, processed or failed by their handler."""
        return len(self._seqs)

    def poll(self) -> list[Receipt]:
        """Read new complete lines; a line still being written is left for the next poll."""
        if self._folder_may_have_new_files():
            self._list_folder()
        for followed in self._files:
            data = followed.read_new()
            if data:
                self._take(followed, data)
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
                failed = parts[4] == FAILED
                receipt = Receipt(int(parts[1]), int(parts[2]), int(parts[3]),
                                  ok=parts[4] == "ok" or failed, failed=failed)
                self.receipts.append(receipt)
                self._seqs.add(receipt.seq)


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
            data = _read_to_end(self.fd)
        else:
            try:
                if os.stat(self.path).st_size <= self.offset:
                    return b""
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return b""
            try:
                os.lseek(fd, self.offset, os.SEEK_SET)
                data = _read_to_end(fd)
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


def _read_to_end(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, READ_CHUNK)
        chunks.append(chunk)
        if len(chunk) < READ_CHUNK:  # a short read of a regular file: its end, for now
            return b"".join(chunks) if len(chunks) > 1 else chunk


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


def tally(receipts: list[Receipt], expected: int, fail_fraction: float = 0.0) -> Tally:
    """Lost, duplicated, corrupt and failed among messages 0..expected-1.

    Failed receipts count as attempts, not deliveries: a failing message retried three times is
    one failed message with three failed attempts, not a duplicate. With no failed receipts
    (fail_fraction 0) the verdict is the one before failures existed.
    """
    counts = Counter(r.seq for r in receipts if not r.failed)
    failures = Counter(r.seq for r in receipts if r.failed)
    sent = range(expected)
    return Tally(
        expected=expected,
        received=sum(1 for seq in sent if counts[seq]),
        lost=tuple(seq for seq in sent if not counts[seq] and not failures[seq]),
        duplicates=tuple(sorted(seq for seq, n in counts.items() if n > 1 and seq < expected)),
        duplicate_deliveries=sum(n - 1 for seq, n in counts.items() if n > 1 and seq < expected),
        corrupt=sum(1 for r in receipts if not r.ok),
        unexpected=sum(n for seq, n in (counts + failures).items() if seq >= expected),
        failed=tuple(seq for seq in sent if failures[seq] and not counts[seq]),
        failed_attempts=sum(failures.values()),
        meant_to_fail=sum(1 for seq in sent if meant_to_fail(seq, fail_fraction)),
        unexpected_failures=tuple(sorted(seq for seq in failures if seq < expected
                                         and not meant_to_fail(seq, fail_fraction))),
    )
