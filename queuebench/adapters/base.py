"""The contract every broker+library pair implements.

Adapters move opaque bytes: they never build payloads and never time anything. The producer side
is an object with `send`, `flush` and `close`. The consumer side is an OS process that the runner
starts, stops and kills: the library's own worker program where it has one (`celery worker`,
`huey_consumer`, ...), else `python -m queuebench consume`, which runs the adapter's `consume` loop.
Either way each message ends in `queuebench.worker.handler.handle`.

Each adapter declares, as data, what a reader needs to understand its figures: capabilities,
the size limit and the broker's error over it, the delivery settings of each variant, and what
the library does with a message whose handler raised (`on_failure`); after a run,
`failure_outcome` counts where such messages ended, where the broker keeps them.
"""

from __future__ import annotations

import signal
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar, Protocol

from queuebench.redact import redact

# Told the outcome of one send: None once the broker acknowledged it, else what failed.
Done = Callable[[BaseException | None], None]


@dataclass(frozen=True)
class Capabilities:
    """How a pair delivers, in words a reader can check against the results."""

    ack: str  # when the message leaves the broker for good, e.g. "after the task returns"
    on_worker_killed: str  # what the library is documented to do with a task in flight
    redelivery_after: str  # what a lost-in-flight message waits for before it comes again
    ordering: str
    carries_bytes: str  # how raw bytes reach the broker, e.g. "base64 in a JSON body (+33%)"
    # What the worker decodes a message with, and what whoever can write to the broker can make
    # it do, e.g. "pickle: whoever can write to the broker runs code in the worker".
    serializer: str
    durability: str  # what the library declares that lets a queued message outlive a broker crash


@dataclass(frozen=True)
class SizeLimit:
    """The largest message the pair takes and what the user sees over it."""

    max_bytes: int | None  # None: no limit short of memory
    error: str  # the broker's or library's own error text for a message over it
    overhead: Callable[[int], int] = field(default=lambda n: n, compare=False, repr=False)

    def wire_bytes(self, payload_bytes: int) -> int:
        """Bytes the broker sees for a payload of `payload_bytes` (base64 and framing included)."""
        return self.overhead(payload_bytes)

    def to_dict(self) -> dict[str, object]:
        return {"max_bytes": self.max_bytes, "error": self.error}


# A plain client has no failure handling of its own: `queuebench consume` logs the error and acks,
# as a typical hand-written loop does (left unacked, the message would come back to fail forever).
DROPPED_BY_THE_LOOP = "not retried: queuebench consume's loop logs the error and acks (dropped)"


def base64_size(n: int) -> int:
    return 4 * ((n + 2) // 3)


@dataclass(frozen=True)
class Backlog:
    """What the broker itself holds after a run, to check the ledger against.

    `waiting` will still be delivered (queued, or leased and due back); `stranded` is held by the
    broker but will never be delivered again (taken by a consumer that died without acking), or
    None where the broker cannot tell stranded messages from processed ones. `due_at` tells,
    where the broker knows, when each message of `waiting` that it holds back for a later
    delivery (a retry's backoff) is due, in time.time() seconds: a run need not wait for a
    retry due after its deadline.
    """

    waiting: int
    stranded: int | None = 0
    detail: str = ""
    due_at: tuple[float, ...] = ()

    def waiting_by(self, when: float) -> int:
        """The messages of `waiting` to be delivered by `when` (time.time() seconds)."""
        return self.waiting - sum(due > when for due in self.due_at)


class Producer(Protocol):
    """Sends opaque bytes to the adapter's queue.

    `send` returns once the client took the message (sent it, or queued it to send) and raises
    what the library raises; `flush` returns once everything sent was delivered and raises the
    first failure; `close` lets go of the connection.

    A producer may also define `send_async(payload, *, key=None, on_done)` (call it through
    `send_async` below, which wraps `send` where it is absent): it calls `on_done(None)` once the
    broker acknowledged the message, or `on_done(exc)` with what failed, exactly once, from
    whichever thread learns it (a client's I/O thread, a poller, or the caller's own when the
    client refuses the message at once); `send_async` itself raises nothing for a failed send.
    A producer that holds messages back to batch them sets `holds_sends = True`: their outcome
    comes only once the next sends or `flush()` send the batch. A failure delivered to `on_done`
    is not raised again by `send` or `flush`. (A callback, not a Future: a Future per message,
    with its lock and condition, cost more than the send itself.)
    """

    def send(self, payload: bytes, *, key: str | None = None) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def send_async(producer: Producer, payload: bytes, *, key: str | None = None,
               on_done: Done) -> None:
    """Send `payload` and have `on_done` told its outcome: the producer's own `send_async`, or
    else `send` run now, `on_done` called when it returns or raises."""
    own = getattr(producer, "send_async", None)
    if own is not None:
        own(payload, key=key, on_done=on_done)
        return
    try:
        producer.send(payload, key=key)
    except Exception as exc:
        on_done(exc)
    else:
        on_done(None)


@dataclass(frozen=True)
class Variant:
    """A named set of library settings, run as its own row in a report."""

    name: str
    settings: Mapping[str, object]
    note: str = ""
    # The longest a killed consumer's message may wait before it is delivered again (leases,
    # visibility timeouts, heartbeats): experiments wait this much longer before giving up.
    redelivery_sec: float = 0.0
    # What this variant does with a message whose handler raised, where it differs from the
    # adapter's `on_failure` (e.g. a variant that sets fewer retries).
    on_failure: str = ""


CONFIRMS_NOTE = ("publisher confirms: a send returns once RabbitMQ has taken the message, a "
                 "persistent one written to disk (RabbitMQ's own guarantee for a confirm)")


def with_confirms(variants: tuple[Variant, ...], **confirm_settings: object
                  ) -> tuple[Variant, ...]:
    """`variants` and a `confirms` one: the first (the library's defaults) with publisher
    confirms turned on by `confirm_settings`. Without them a RabbitMQ crash or a black-holed
    link loses sends the library already returned from."""
    default = variants[0]
    return (*variants, replace(default, name="confirms", note=f"{default.note}; {CONFIRMS_NOTE}",
                               settings={**default.settings, **confirm_settings}))


class Adapter(ABC):
    """One broker+library pair, addressed by a compound URL such as `huey+sqlite:///q.db`.

    `self.url` keeps the password, for connecting; whatever leaves the adapter (`describe`,
    errors, the worker's command line) shows it masked (`queuebench.redact`).
    """

    scheme: ClassVar[str]  # the registry's key; its default URL and extra live there too
    library: ClassVar[str]  # distribution whose version goes into the manifest
    broker: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    size_limit: ClassVar[SizeLimit]
    variants: ClassVar[tuple[Variant, ...]]
    # What `consumers.concurrency` N means inside one consumer process of this pair, in the
    # library's own unit and with the option that sets it, e.g. "prefork pool children
    # (celery worker --concurrency N)".
    concurrency_unit: ClassVar[str]
    # What the library documents as its graceful shutdown.
    graceful_stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    # What the library does by default with a message whose handler raised, in one sentence:
    # retried (how often, how far apart), then dead-lettered, kept, or dropped.
    on_failure: ClassVar[str] = ""

    def __init__(self, url: str, *, queue: str, variant: str = "default") -> None:
        """Check the URL and variant; connect to nothing yet."""
        self.url = url
        self.queue = queue
        self.variant = self.find_variant(variant)

    @classmethod
    def find_variant(cls, name: str) -> Variant:
        from queuebench.errors import UsageError

        for variant in cls.variants:
            if variant.name == name:
                return variant
        known = ", ".join(v.name for v in cls.variants)
        raise UsageError(f"{cls.scheme} has no variant {name!r}; its variants are: {known}")

    @property
    def settings(self) -> Mapping[str, object]:
        return self.variant.settings

    @property
    def failure_handling(self) -> str:
        """What this pair and variant do with a message whose handler raised."""
        return self.variant.on_failure or self.on_failure

    def describe(self) -> dict[str, object]:
        """The declared data a result carries so that a reader sees why it came out so."""
        return {
            "pair": self.scheme,
            "variant": self.variant.name,
            "variant_note": self.variant.note,
            "url": redact(self.url),
            "library": self.library,
            "broker": self.broker,
            "capabilities": asdict(self.capabilities),
            "concurrency_unit": self.concurrency_unit,
            "size_limit": self.size_limit.to_dict(),
            "delivery_settings": dict(self.settings),
            "on_failure": self.failure_handling,
        }

    @abstractmethod
    def check_reachable(self, timeout: float) -> None:
        """Raise BrokerUnreachable, naming the address, unless the broker answers in time."""

    def broker_version(self) -> str | None:
        """The broker's own version, where it tells."""
        return None

    @abstractmethod
    def prepare(self) -> None:
        """Make `self.queue` exist and be empty."""

    @abstractmethod
    def producer(self) -> Producer:
        """A connected producer for `self.queue`."""

    def consumer_argv(self, concurrency: int = 1) -> list[str]:
        """The program a user would run to consume, with `concurrency` of the pair's own unit
        (`concurrency_unit`); with 1, the library's single-worker command.

        Plain clients run `queuebench consume`, which reads its concurrency from its
        configuration (the environment) and runs that many receive loops in threads.
        """
        return [sys.executable, "-m", "queuebench", "consume"]

    def consumer_env(self) -> dict[str, str]:
        """Environment variables the consumer needs besides its configuration: what must not go
        on its command line (a password there is shown to every local user by `ps`)."""
        return {}

    def consume(self, handle: Callable[[bytes], None], stopping: threading.Event) -> None:
        """Receive until `stopping` is set, calling `handle` per message, then acking it.

        Only plain-client adapters implement this; task libraries run their own worker. With
        concurrency N, `queuebench consume` runs it in N threads, each on an adapter instance
        of its own (its own clients), all sharing `handle` and `stopping`.
        """
        raise NotImplementedError(f"{self.scheme} consumes through its own worker program")

    def unsettled_group(self, members: int) -> str | None:
        """What keeps the broker from having handed a share of the queue to each of `members`
        consumers (a Kafka group not yet stable with every partition assigned), in words; None
        once it has. Where the broker hands out work message by message there is no share to
        wait for, and a consumer that processed one is ready."""
        return None

    @abstractmethod
    def backlog(self) -> Backlog | None:
        """What the broker still holds for `self.queue`, or None where it cannot tell."""

    def failure_outcome(self) -> dict[str, int] | None:
        """After a run, where the messages whose handler raised ended, as the broker counts
        them, e.g. {"dead_lettered": 2, "retry_pending": 1}; None where it keeps no trace of
        them (the ledger's failed receipts then say how often each was tried)."""
        return None

    def delete_queue(self) -> None:  # noqa: B027 - most brokers keep nothing of an empty queue
        """Remove from the broker what `prepare` made, after every case however it ended, so
        runs leave no litter (RabbitMQ recovers every durable queue at boot: 745 left by earlier
        runs made a restart take 35 s instead of 13; Kafka kept 15,075 topic partitions and took
        over 120 s to start). Redis drops a list once it is empty."""

    def cleanup(self) -> None:  # noqa: B027 - most adapters hold nothing to release
        """Release connections."""
