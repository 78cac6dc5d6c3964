"""A queue in a folder, one file per message: the engine's test pair, never offered to users.

Like Dramatiq's StubBroker it needs no server and is fast and deterministic, but our consumers
are OS processes, so memory cannot be shared with them: a folder can. It is registered in
`TEST_PAIRS`, which `queuebench pairs`, the groups and "did you mean" never show.

Features: at-least-once. The producer writes each message to `tmp/` and renames it into
`ready/` (a rename is atomic: a consumer never sees half a message); file names sort by send
time, so delivery is FIFO except for redeliveries. A consumer claims the oldest message by
renaming it into its own folder under `taken/`, handles it, then deletes it. A message whose
handler fails on purpose (HandlerFailed) is moved to `dead/`, a dead-letter folder: not retried,
since the same message would fail again. Any other exception ends the consumer with the message
left where it was claimed.

What a kill costs: the claimed file stays in the dead consumer's folder under `taken/`. Each
consumer holds an exclusive `flock` on a `.lock` file in its folder for as long as it lives (the
kernel lets go of it when the process dies, even by SIGKILL); a consumer that starts returns the
files of every folder whose lock it can take to `ready/`, under their old names. That is a lease
that ends when its holder is gone, noticed at the next consumer start: a restarted consumer
handles the message again (a duplicate if its receipt was written before the kill), while a
consumer that never restarts leaves it stranded, which `backlog()` reports.

Connection URL: `stub+dir:///relative/folder` or `stub+dir:////absolute/folder`, as SQLite's.
The queue is the sub-folder named after it.

Options (the `default` variant): `poll_interval_sec` (how long an empty `ready/` is left alone).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path

from queuebench.adapters.base import Adapter, Backlog, Capabilities, SizeLimit, Variant
from queuebench.errors import BrokerUnreachable, UsageError
from queuebench.worker.failures import HandlerFailed

DEFAULT_POLL_INTERVAL_SEC = 0.005
LOCK = ".lock"
# Taking another consumer's lock is tried this often before it is judged alive: `backlog()`
# holds a dead consumer's lock for an instant while it counts, and must not hide it.
LOCK_TRIES, LOCK_RETRY_SEC = 3, 0.01
_sent = itertools.count()  # per producing process, so that names sent in one ns still sort


def folder_of(url: str) -> Path:
    """`stub+dir:///rel` -> ./rel; `stub+dir:////abs` -> /abs."""
    address = url.partition("://")[2]
    if not address.startswith("/") or len(address) < 2:
        raise UsageError(f"stub+dir needs a folder: stub+dir:///FOLDER, not {url!r}")
    return Path(address[1:]).resolve()


class DirProducer:
    def __init__(self, queue_dir: Path) -> None:
        self.tmp, self.ready = queue_dir / "tmp", queue_dir / "ready"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.ready.mkdir(parents=True, exist_ok=True)

    def send(self, payload: bytes, *, key: str | None = None) -> None:
        name = f"{time.time_ns():020d}-{os.getpid():07d}-{next(_sent):09d}"
        (self.tmp / name).write_bytes(payload)
        os.rename(self.tmp / name, self.ready / name)  # whole, or not there at all

    def flush(self) -> None:
        """Every message is in `ready/` as `send` returns."""

    def close(self) -> None:
        """Holds nothing open."""


class StubAdapter(Adapter):
    scheme = "stub+dir"
    library = "queuebench"
    broker = "dir"
    capabilities = Capabilities(
        ack="file deleted after the handler returns",
        on_worker_killed="the claimed file stays under taken/; the next consumer to start "
                         "returns it to the queue",
        redelivery_after="the next consumer start",
        ordering="FIFO by file name (send time), except redeliveries",
        carries_bytes="raw bytes, one file per message",
        serializer="none: raw bytes reach the handler, nothing is unpickled or decoded",
        durability="each message is a file renamed into ready/, never fsynced: the OS's page "
                   "cache decides",
    )
    size_limit = SizeLimit(max_bytes=None, error="none short of the disk: OSError ENOSPC")
    variants = (
        Variant("default", {"poll_interval_sec": DEFAULT_POLL_INTERVAL_SEC}),
    )
    concurrency_unit = ("claiming threads of one `queuebench consume` process, each with a "
                        "folder of its own under taken/")

    def __init__(self, url: str, *, queue: str, variant: str = "default") -> None:
        super().__init__(url, queue=queue, variant=variant)
        self.root = folder_of(url)
        self.queue_dir = self.root / queue
        self._owned: Path | None = None  # this consumer's folder under taken/
        self._lock_fd: int | None = None
        self._listed: deque[str] = deque()  # names in ready/ at the last listing, oldest first

    def _dir(self, name: str) -> Path:
        return self.queue_dir / name

    def check_reachable(self, timeout: float) -> None:
        """The folder exists and is writable, or could be made; nothing is created."""
        folder = self.root
        while not folder.exists():  # the root always exists
            folder = folder.parent
        if not folder.is_dir():
            raise BrokerUnreachable(f"{self.scheme}: cannot use {self.root}: {folder} is not a "
                                    "folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise BrokerUnreachable(f"{self.scheme}: cannot use {self.root}: the folder "
                                    f"{folder} is not writable")

    def prepare(self) -> None:
        shutil.rmtree(self.queue_dir, ignore_errors=True)
        for name in ("tmp", "ready", "taken", "dead"):
            self._dir(name).mkdir(parents=True, exist_ok=True)

    def delete_queue(self) -> None:
        shutil.rmtree(self.queue_dir)

    def producer(self) -> DirProducer:
        return DirProducer(self.queue_dir)

    def consume(self, handle: Callable[[bytes], None], stopping: threading.Event) -> None:
        poll = float(self.settings["poll_interval_sec"])
        self._own_a_folder()
        self._return_stranded()
        while not stopping.is_set():
            claimed = self._claim()
            if claimed is None:
                stopping.wait(poll)
                continue
            try:
                handle(claimed.read_bytes())
            except HandlerFailed:
                os.rename(claimed, self._dir("dead") / claimed.name)
                continue
            claimed.unlink()

    def _own_a_folder(self) -> None:
        """Make this consumer's folder under taken/, locked for as long as the process lives.

        It is made and locked under a hidden name first, so no other consumer ever sees it
        unlocked and takes it for a dead one's.
        """
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        hidden = self._dir("taken") / f".{name}"
        hidden.mkdir(parents=True)
        fd = os.open(hidden / LOCK, os.O_WRONLY | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._owned, self._lock_fd = hidden.rename(hidden.with_name(name)), fd

    def _return_stranded(self) -> None:
        """Every file in the folder of a consumer that is gone goes back to ready/."""
        for owner in self._owners():
            if owner == self._owned:
                continue
            with _lock_of_the_dead(owner, tries=LOCK_TRIES) as dead, \
                    contextlib.suppress(FileNotFoundError):  # returned by another consumer
                if dead:
                    for message in _messages_in(owner):
                        os.rename(message, self._dir("ready") / message.name)
                    (owner / LOCK).unlink()
                    owner.rmdir()
        self._listed.clear()

    def _owners(self) -> list[Path]:
        return [p for p in self._dir("taken").iterdir() if not p.name.startswith(".")]

    def _claim(self) -> Path | None:
        """Rename the oldest message in ready/ into this consumer's folder; None if empty."""
        while True:
            if not self._listed:
                self._listed.extend(sorted(os.listdir(self._dir("ready"))))
                if not self._listed:
                    return None
            name = self._listed.popleft()
            try:
                os.rename(self._dir("ready") / name, self._owned / name)
            except FileNotFoundError:  # another consumer took it first
                continue
            return self._owned / name

    def backlog(self) -> Backlog:
        ready = len(os.listdir(self._dir("ready")))
        in_hand = stranded = 0
        for owner in self._owners():
            with _lock_of_the_dead(owner, tries=1) as dead:
                try:
                    held = len(_messages_in(owner))
                except FileNotFoundError:  # returned to ready/ by a consumer starting
                    held = 0
            if dead:
                stranded += held
            else:
                in_hand += held
        dead_letters = len(os.listdir(self._dir("dead")))
        return Backlog(waiting=ready + in_hand, stranded=stranded,
                       detail=f"{ready} files in ready/, {in_hand} in running consumers' hands, "
                              f"{stranded} stranded by consumers gone, {dead_letters} in dead/")

    def cleanup(self) -> None:
        """Remove this consumer's folder if it holds nothing, then let go of its lock."""
        if self._owned is not None:
            with contextlib.suppress(OSError):  # a message still in it: left for the next start
                if not _messages_in(self._owned):
                    (self._owned / LOCK).unlink()
                    self._owned.rmdir()
            self._owned = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _messages_in(owner: Path) -> list[Path]:
    return [p for p in owner.iterdir() if p.name != LOCK]


@contextlib.contextmanager
def _lock_of_the_dead(owner: Path, *, tries: int):
    """Yield True, holding its lock, if the consumer that owns `owner` is gone; else False."""
    try:
        fd = os.open(owner / LOCK, os.O_RDONLY)
    except FileNotFoundError:  # returned by another consumer meanwhile
        yield False
        return
    try:
        for attempt in range(tries):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt + 1 < tries:
                    time.sleep(LOCK_RETRY_SEC)
        else:
            yield False
            return
        yield True
    finally:
        os.close(fd)
