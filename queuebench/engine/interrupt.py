"""`queuebench run`'s handler of SIGTERM, SIGHUP and Ctrl-C.

It raises KeyboardInterrupt, as Python's own handler does, so the run ends through the
experiments' cleanup; and it remembers it, for two reasons:

- A client library running its event loop in our thread can catch what a handler raised (a Kafka
  run once went on after its SIGTERM into its next case): every wait of the engine checks.
- Raised inside `subprocess.Popen`, after the fork, it leaves a child the run never learns of:
  a consumer started in `deferred()` is known to the run (and so stopped by its cleanup) before
  the interrupt is raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class Interrupt:
    received = False  # plain flags: a lock taken in a signal handler can deadlock
    _deferring = 0

    @classmethod
    def handle(cls, signum: int, frame: object) -> None:
        cls.received = True
        if not cls._deferring:
            raise KeyboardInterrupt

    @classmethod
    def check(cls) -> None:
        if cls.received:
            raise KeyboardInterrupt

    @classmethod
    @contextlib.contextmanager
    def deferred(cls) -> Iterator[None]:
        """An interrupt that arrives inside is raised once the block is done."""
        cls._deferring += 1
        try:
            yield
        finally:
            cls._deferring -= 1
        cls.check()
