"""Passwords never leave the process: every URL written to a report, a log or stderr is masked.

`redact` masks the password of every `scheme://user:password@host` in a text (an error line, a
command line, a URL), so one call at each place text leaves the program is enough.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@ -- the password runs up to the last "@" before the host part.
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<password>[^/\s]*)@")


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@" if m["password"] else m[0], text)
