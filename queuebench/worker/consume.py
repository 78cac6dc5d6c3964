"""`queuebench consume`: the consumer program of pairs that have no worker of their own.

It reads its configuration from the environment (see handler.py), runs the adapter's receive loop
and stops after the message in hand on SIGTERM or SIGINT.
"""

from __future__ import annotations

import signal
import threading

from queuebench import adapters
from queuebench.worker.handler import consumer_config, handle


def run_consumer() -> None:
    config = consumer_config()
    adapter = adapters.create(config.pair_url, queue=config.queue, variant=config.variant)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        adapter.consume(handle, stopping)
    finally:
        adapter.cleanup()
