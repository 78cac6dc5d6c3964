"""What every consumer process does per message, whatever the library delivering it.

A consumer process is started by the runner with its configuration in one environment variable,
because task libraries start their workers from their own command lines (`celery worker -A ...`)
and import our task module themselves: the environment is the one channel they pass through.
The handler does the configured work, then writes the receipt, then returns so the library acks;
a message meant to fail (`fail_fraction`) gets a "failed" receipt and raises HandlerFailed instead.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from queuebench.payloads.codecs import decode
from queuebench.worker.envelope import Envelope, unwrap
from queuebench.worker.failures import HandlerFailed, meant_to_fail
from queuebench.worker.receipts import ReceiptWriter, exits_through_python

CONFIG_ENV = "QUEUEBENCH_CONSUMER"


@dataclass(frozen=True)
class ConsumerConfig:
    pair_url: str
    queue: str
    variant: str
    ledger_dir: str
    work_ms: float
    format: str | None = None  # the payload format the handler decodes; None: bytes as they are
    concurrency: int = 1  # per consumer process, in the pair's own unit
    fail_fraction: float = 0.0  # of the messages whose handler raises, chosen by seq
    # Receipts held and written in batches (see receipts.py): only where no consumer is stopped
    # or killed, since a kill loses the batch held.
    batch_receipts: bool = False

    def to_env(self) -> dict[str, str]:
        return {CONFIG_ENV: json.dumps(asdict(self))}


@cache
def consumer_config() -> ConsumerConfig:
    """This process's configuration, set by the runner that started it."""
    raw = os.environ.get(CONFIG_ENV)
    if raw is None:
        raise RuntimeError(f"{CONFIG_ENV} is not set: consumers are started by `queuebench run`")
    return ConsumerConfig(**json.loads(raw))


_writers: dict[int, ReceiptWriter] = {}


def _writer() -> ReceiptWriter:
    # Keyed by pid: a forked process opens its own descriptor rather than use its parent's.
    pid = os.getpid()
    if pid not in _writers:
        config = consumer_config()
        _writers[pid] = ReceiptWriter(Path(config.ledger_dir),
                                      batched=config.batch_receipts and exits_through_python())
    return _writers[pid]


def handle(message: bytes) -> None:
    """Process one message as a user's task would: note when work starts, decode its stock
    records, do the work, maybe fail, then write its receipt.

    A message meant to fail (`fail_fraction`, chosen by sequence number) writes a "failed"
    receipt and raises HandlerFailed, so the library delivering it does what it does with a
    failing task. A corrupt payload is never made to fail: its "corrupt" receipt says more.
    """
    received_ns = time.time_ns()
    envelope = unwrap(message)
    config = consumer_config()
    _note_start(envelope, received_ns, config)
    _decode(envelope, config)
    _work(config)
    if envelope.payload_ok and meant_to_fail(envelope.seq, config.fail_fraction):
        _writer().failed(envelope, received_ns)
        raise HandlerFailed(envelope.seq)
    _writer().write(envelope, received_ns)


def _note_start(envelope: Envelope, received_ns: int, config: ConsumerConfig) -> None:
    if config.work_ms > 0:
        _writer().started(envelope, received_ns)  # lets the engine stop mid-task


def _decode(envelope: Envelope, config: ConsumerConfig) -> None:
    if config.format and envelope.payload_ok:  # what a consumer pays for its format
        decode(bytes(envelope.payload), config.format)


def _work(config: ConsumerConfig) -> None:
    if config.work_ms > 0:
        time.sleep(config.work_ms / 1000)
