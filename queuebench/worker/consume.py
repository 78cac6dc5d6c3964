"""`queuebench consume`: the consumer program of pairs that have no worker of their own.

It reads its configuration from the environment (see handler.py), runs the adapter's receive loop
and stops after the message in hand on SIGTERM or SIGINT.

With concurrency N it runs N receive loops in threads, each on an adapter instance of its own,
so each has its own clients (a Kafka consumer-group member, an SQS client, a database engine);
the handler is shared, its receipts one O_APPEND write each. A loop that raises stops the others
after their message in hand, and the process then fails with its error, as one loop would.

Even one loop runs in a thread: the signal handler sets the loops' `stopping` event, and a handler
runs in the main thread between two of its bytecodes. Had the main thread been inside
`stopping.wait()` holding the event's lock, `set()` would wait for that lock forever (1 graceful
stop in 100 hung so, until it was killed). The main thread only joins the loops, so it never
holds that lock.
"""

from __future__ import annotations

import signal
import sys
import threading

from queuebench import adapters
from queuebench.adapters.base import Adapter
from queuebench.worker.failures import HandlerFailed
from queuebench.worker.handler import consumer_config
from queuebench.worker.handler import handle as handle_message

JOIN_POLL_SEC = 0.5  # the main thread waits in slices, so that it takes signals meanwhile


def handle(message: bytes) -> None:
    """The handler as a user's loop would call it: a task that raises is logged and its message
    acked (dropped), as Celery, Huey and RQ do with a failed task by default, and the loop goes
    on. (Leaving it unacked would bring it back to fail again, forever: failure is by seq.)"""
    try:
        handle_message(message)
    except HandlerFailed as exc:
        print(f"consume: {exc}; message dropped", file=sys.stderr, flush=True)


def run_consumer() -> None:
    """`concurrency` receive loops in threads until SIGTERM or SIGINT; re-raises the first
    failure."""
    config = consumer_config()
    stopping = threading.Event()
    failures: list[BaseException] = []

    def receive(adapter: Adapter) -> None:
        try:
            adapter.consume(handle, stopping)
        except BaseException as exc:
            failures.append(exc)
            stopping.set()  # the others finish the message in hand and stop
        finally:
            adapter.cleanup()

    loops = [adapters.create(config.pair_url, queue=config.queue, variant=config.variant)
             for _ in range(config.concurrency)]
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    threads = [threading.Thread(target=receive, args=(adapter,), name=f"receive-{index}")
               for index, adapter in enumerate(loops)]
    if len(loops) > 1:
        print(f"consume: {len(loops)} receive loops in threads ({loops[0].concurrency_unit})",
              file=sys.stderr, flush=True)  # the command line does not show them
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(JOIN_POLL_SEC)
    if failures:
        for extra in failures[1:]:
            print(f"consume: another receive loop failed too: {extra!r}", file=sys.stderr,
                  flush=True)
        raise failures[0]
