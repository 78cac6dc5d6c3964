"""What the harness costs: each fast pair through queuebench against a bare loop of its client.

    python -m queuebench.bench.overhead [--pair NAME ...] [--messages N] [--repeats 3]
                                        [--records 1] [--format protobuf]

For each pair (confluent-kafka+kafka, huey+redis, dramatiq+rabbitmq by default) and each repeat,
three runs alternate, each on an emptied queue, producing N messages and then consuming them:

- bare: the client alone, sending the same encoded payloads (see bare.py);
- harness: the engine's producer (envelope, acknowledgements per message) and the pair's real
  consumer process with the handler and a receipt line written per message, as a throughput run
  with consumer faults writes them;
- harness, receipts batched: the same, with receipts written in batches, as a run without
  consumer faults may.

Both sides encode each message's stock records inside the timed loop, as a user's producer
does; neither consumer decodes them (what a format costs is the workload's, not the harness's).
Produce runs from the first send to the flush; consume from the first message handled to the
last (the drain rate: the consumer starts on a full queue, its start-up is not counted). It
prints medians with [min-max] and the overhead of the harness's median against the bare one;
the goal is at most 3% on produce and 5% on consume. It asserts nothing about speed: the
figures are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from queuebench import adapters
from queuebench.adapters.base import Adapter
from queuebench.bench import bare
from queuebench.engine.consumer import ConsumerProcess
from queuebench.engine.ledger import LedgerReader
from queuebench.engine.producers import Sending, produce
from queuebench.errors import BrokerUnreachable, ConsumerFailed
from queuebench.payloads.codecs import FORMATS, encode
from queuebench.payloads.records import StockRecord
from queuebench.payloads.stockdb import PRODUCT_ROWS, fetch_records, open_stock_db
from queuebench.redact import redact

# Enough messages for about a second of the faster direction of each pair on 2 cores.
DEFAULT_MESSAGES = {"confluent-kafka+kafka": 200_000, "huey+redis": 10_000,
                    "dramatiq+rabbitmq": 10_000}
BARE, PER_MESSAGE, BATCHED = "bare", "harness", "harness, receipts batched"
RUNS = (BARE, PER_MESSAGE, BATCHED)
GOAL_PCT = {"produce": 3.0, "consume": 5.0}
DISTINCT_MESSAGES = 100  # payloads cycle through this many messages' records
REACH_TIMEOUT_SEC = 5.0
LEDGER_POLL_SEC = 0.05


def positive(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def stock_records(records: int) -> list[list[StockRecord]]:
    """DISTINCT_MESSAGES messages' records from the stock database, one query."""
    count = max(1, min(DISTINCT_MESSAGES, PRODUCT_ROWS // records))
    rows = fetch_records(open_stock_db(), count * records, 0)
    return [rows[i * records:(i + 1) * records] for i in range(count)]


class Cycle:
    """Message seq's records, cycling through a few messages: a million sends, a few rows."""

    def __init__(self, messages: list[list[StockRecord]]) -> None:
        self.messages = messages

    def __getitem__(self, seq: int) -> list[StockRecord]:
        return self.messages[seq % len(self.messages)]


def harness_run(adapter: Adapter, records: Cycle, fmt: str, messages: int, folder: Path,
                *, batched: bool, timeout: float) -> tuple[float, float]:
    """Produce through the engine, consume through the pair's consumer process and the
    ledger; return (produce, consume) messages/s."""
    run_id = uuid.uuid4()
    produced = produce(adapter, Sending(run_id, records, fmt, None), messages)
    if produced.failed:
        raise ConsumerFailed(f"the engine's producer: {produced.failed} sends not acknowledged")
    consumer = ConsumerProcess(adapter, ledger_dir=folder / "ledger", work_ms=0,
                               log_path=folder / "consumer.log", batch_receipts=batched)
    give_up = time.monotonic() + timeout
    consumer.start()
    try:
        with LedgerReader(folder / "ledger", str(run_id)) as ledger:
            while ledger.distinct < messages:
                consumer.check_alive()
                if time.monotonic() > give_up:
                    raise ConsumerFailed(f"{ledger.distinct} of {messages} receipts in "
                                         f"{timeout:.0f} s; see {folder}")
                time.sleep(LEDGER_POLL_SEC)
                ledger.poll()
            times = ledger.receipts.received_ns
    finally:
        consumer.ensure_stopped()
    return (messages / produced.seconds,
            bare.drain_rate(messages, min(times), max(times)))


def bare_run(adapter: Adapter, records: Cycle, fmt: str, messages: int, folder: Path,
             timeout: float) -> tuple[float, float]:
    if adapter.library == "confluent-kafka":
        return (bare.produce_kafka(adapter, records, fmt, messages),
                bare.consume_kafka(adapter, messages, timeout))
    return (bare.produce_task(adapter, records, fmt, messages),
            bare.consume_task(adapter, messages, folder, timeout))


def measure_pair(adapter: Adapter, records: Cycle, fmt: str, messages: int, repeats: int,
                 workdir: Path, progress: Callable[[str], None]) -> dict[str, dict[str, list]]:
    """{run: {"produce": [msg/s per repeat], "consume": [...]}}, runs alternating."""
    figures: dict[str, dict[str, list]] = {run: {"produce": [], "consume": []} for run in RUNS}
    timeout = max(60.0, messages / 500)  # far beyond any pair's pace: a stuck run, not a slow one
    for repeat in range(repeats):
        for run in RUNS:
            adapter.prepare()  # an empty queue, and for Kafka a new topic
            adapter.cleanup()  # else RabbitMQ drops the idle connection (missed heartbeats)
            folder = workdir / f"{adapter.scheme}-{repeat}-{run.replace(', ', '-')}"
            if run == BARE:
                produced, consumed = bare_run(adapter, records, fmt, messages, folder, timeout)
            else:
                produced, consumed = harness_run(adapter, records, fmt, messages, folder,
                                                 batched=run == BATCHED, timeout=timeout)
            figures[run]["produce"].append(produced)
            figures[run]["consume"].append(consumed)
            progress(f"  {adapter.scheme} repeat {repeat + 1}/{repeats} {run}: "
                     f"produce {produced:,.0f}/s, consume {consumed:,.0f}/s")
    adapter.delete_queue()  # leaves nothing behind on the broker
    return figures


def spread(values: list[float]) -> str:
    return (f"{statistics.median(values):,.0f} "
            f"[{min(values):,.0f}-{max(values):,.0f}]")


def overhead_pct(bare_values: list[float], harness_values: list[float]) -> float:
    """How much slower the harness's median is than the bare one, in percent."""
    bare_median = statistics.median(bare_values)
    return 100.0 * (bare_median - statistics.median(harness_values)) / bare_median


def table(results: dict[str, tuple[int, dict[str, dict[str, list]]]]) -> list[str]:
    lines = ["| pair | messages | direction | bare msg/s | harness msg/s | overhead |",
             "|---|---:|---|---:|---:|---:|"]
    for pair, (messages, figures) in results.items():
        rows = [("produce", figures[PER_MESSAGE]["produce"]
                 + figures[BATCHED]["produce"]),  # the same producer in both harness runs
                ("consume, a receipt per message", figures[PER_MESSAGE]["consume"]),
                ("consume, receipts batched", figures[BATCHED]["consume"])]
        for direction, harness in rows:
            kind = direction.split(",")[0]
            pct = overhead_pct(figures[BARE][kind], harness)
            mark = "" if pct <= GOAL_PCT[kind] else f" (goal {GOAL_PCT[kind]:g}%)"
            lines.append(f"| {pair} | {messages:,} | {direction} | "
                         f"{spread(figures[BARE][kind])} | {spread(harness)} | "
                         f"{pct:.1f}%{mark} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m queuebench.bench.overhead",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--pair", action="append", choices=sorted(DEFAULT_MESSAGES),
                        help="a pair (repeatable; default: all three)")
    parser.add_argument("--messages", type=positive,
                        help="messages per run (default: " + ", ".join(
                            f"{pair} {n:,}" for pair, n in DEFAULT_MESSAGES.items()) + ")")
    parser.add_argument("--repeats", type=positive, default=3, help="repeats (default 3)")
    parser.add_argument("--records", type=positive, default=1,
                        help="stock records per message (default 1)")
    parser.add_argument("--format", choices=FORMATS, default="protobuf",
                        help="payload format (default protobuf)")
    args = parser.parse_args(argv)
    records = Cycle(stock_records(args.records))
    payload_bytes = len(encode(records[0], args.format))
    load = os.getloadavg()[0]
    print(f"harness overhead: {args.repeats} repeats of bare / harness / harness with batched "
          f"receipts, alternating; {args.records}-record {args.format} payloads "
          f"({payload_bytes:,} bytes); load average {load:.2f} on {os.cpu_count()} CPUs at the "
          "start (the figures are only as quiet as the machine)", flush=True)
    results, failed = {}, []
    with tempfile.TemporaryDirectory(prefix="queuebench-overhead-") as tmp:
        for pair in args.pair or list(DEFAULT_MESSAGES):
            messages = args.messages or DEFAULT_MESSAGES[pair]
            adapter = None
            try:
                adapter = adapters.create(pair, queue=f"qbbench{uuid.uuid4().hex[:8]}")
                adapter.check_reachable(REACH_TIMEOUT_SEC)
                results[pair] = messages, measure_pair(
                    adapter, records, args.format, messages, args.repeats, Path(tmp),
                    lambda text: print(text, flush=True))
            except BrokerUnreachable as exc:
                print(f"{pair}: skipped, its broker does not answer: {redact(str(exc))} "
                      "(start it: python -m queuebench.services up)", flush=True)
            except Exception as exc:  # a library's own error too: one line, the next pair
                print(f"{pair}: failed: {type(exc).__name__}: {redact(str(exc))}", flush=True)
                failed.append(pair)
            finally:
                if adapter is not None:
                    adapter.cleanup()
    if results:
        print("\n".join(["", *table(results), "",
                         "medians [min-max] of the repeats; overhead: the harness's median "
                         "against the bare one; goal: at most 3% on produce, 5% on consume"]))
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
