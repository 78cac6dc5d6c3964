"""The client libraries' own log lines during a run, kept in the run folder's `clients.log`.

While a broker is down, kafka-python, aiokafka, librdkafka and botocore report every retry: a
5 s Kafka restart printed some 1,100 lines on the run's terminal, between its one line per
experiment. They are worth keeping beside the results, so they go to the run folder instead of
stderr, warnings and worse as the libraries' loggers send them (Python's default), passwords
masked as everywhere else. (librdkafka writes to stderr itself unless handed a logger, which the
confluent-kafka adapter's producer does.)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from queuebench.redact import redact

FILE_NAME = "clients.log"


class _Redacting(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


@contextlib.contextmanager
def client_logs_in(folder: Path) -> Iterator[None]:
    """Within: every log record that reaches the root logger goes to `folder`/clients.log (made
    at the first one), not to stderr."""
    handler = logging.FileHandler(folder / FILE_NAME, delay=True)
    handler.setFormatter(_Redacting("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
