"""Whether an embedded pair could use its SQLite file, found out without creating or opening it.

A probe asks; it does not write. Opening a database is already writing: `sqlite3.connect`
creates a missing file, and even a read-only connection to a database in WAL mode (as the pairs
leave theirs) creates `-wal` and `-shm` files beside it and leaves them there. So the probe asks
the file system only: an existing file must be a SQLite database (or empty, which SQLite takes
as a new one) that may be read and written, in a folder that may be written (journals go beside
it); a missing file needs its nearest existing folder to be writable, as the folders under it and
the file are made on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

from queuebench.errors import BrokerUnreachable

SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database


def check_sqlite_file(scheme: str, path: Path) -> None:
    """Raise BrokerUnreachable, naming `path`, unless it is a usable SQLite file or could be made.

    Creates, opens for writing and changes nothing.
    """
    try:
        reason = _unusable(path)
    except OSError as exc:  # e.g. a folder on the way that may not be searched
        reason = exc.strerror or str(exc)
    if reason:
        raise BrokerUnreachable(f"{scheme}: cannot use {path}: {reason}")


def _unusable(path: Path) -> str | None:
    if path.exists():
        if not path.is_file():
            return "not a file"
        if not os.access(path, os.R_OK | os.W_OK):
            return "not readable and writable"
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
        if not SQLITE_HEADER.startswith(header):  # b"" (a new, empty file) is a prefix too
            return "not a SQLite database"
        folder = path.parent
    else:
        folder = path.parent
        while not folder.exists():  # the root always exists
            folder = folder.parent
        if not folder.is_dir():
            return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable"
    return None
