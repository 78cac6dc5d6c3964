"""python -m queuebench.ceilings: each broker's own load tool at the pairs' message sizes.

A broker that does not answer is named, with the command that starts it, and the others still
run. Exit codes: 0 when at least one ceiling was measured, 1 when none was, 2 for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from queuebench.ceilings.ceiling import (
    DEFAULT_JSON,
    DEFAULT_MARKDOWN,
    Ceiling,
    load_ceilings,
    markdown_table,
    to_document,
)
from queuebench.engine.results import write_atomically
from queuebench.errors import QueuebenchError
from queuebench.redact import redact
from queuebench.services import SERVICES, service

EXIT_NONE_RAN, EXIT_BAD_INPUT = 1, 2
BROKERS = ("kafka", "rabbitmq", "redis", "postgres", "sqs")  # each a module of this package
STOCK_SIZES = ((1, "json"), (1, "protobuf"), (100, "protobuf"), (100, "json"))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return value


class OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m queuebench.ceilings",
                                description=__doc__.splitlines()[0])
    parser.add_argument("--broker", action="append", choices=BROKERS,
                        help="a broker to measure (repeatable; default: all)")
    parser.add_argument("--sizes", nargs="+", type=positive_int, metavar="BYTES",
                        help="message sizes (default: the stock payloads the pairs send, "
                             "1 and 100 records in JSON and protobuf, in their envelope)")
    parser.add_argument("--messages", type=positive_int, metavar="N",
                        help="messages per size (default: per tool, enough to warm it up)")
    parser.add_argument("--output", type=Path, default=DEFAULT_JSON,
                        help=f"the JSON file (default {DEFAULT_JSON})")
    parser.add_argument("--markdown", type=Path, default=DEFAULT_MARKDOWN,
                        help=f"the markdown table (default {DEFAULT_MARKDOWN})")
    return parser


def stock_sizes() -> list[tuple[str, int]]:
    """(label, bytes) of each stock payload the pairs send, measured with its envelope."""
    from queuebench.payloads.sizes import payload_sizes
    from queuebench.worker.envelope import HEADER

    wanted = set(STOCK_SIZES)
    sizes = [(f"{size.records} record{'s' if size.records > 1 else ''} {size.fmt}",
              size.bytes + HEADER.size)
             for size in payload_sizes(counts=sorted({records for records, _ in STOCK_SIZES}))
             if (size.records, size.fmt) in wanted]
    return sorted(sizes, key=lambda label_size: label_size[1])


def answers(broker: ModuleType) -> bool:
    try:
        service(broker.SERVICE).probe()
    except Exception:  # whatever the client raises means "not answering"
        return False
    return True


def measure(name: str, broker: ModuleType, sizes: list[tuple[str, int]],
            messages: int | None) -> list[Ceiling]:
    ceilings = []
    for label, size in sizes:
        count = messages or broker.default_messages(size)
        print(f"{name}: {broker.TOOL}, {size:,} B ({label}) x {count:,}", file=sys.stderr,
              flush=True)
        started = time.monotonic()
        measured_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            rates = broker.measure(size, count)
        except Exception as error:  # a tool's failure is reported and the others go on
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            print(redact(f"{name}: {size:,} B failed: {first_line}"), file=sys.stderr)
            continue
        ceilings.append(Ceiling.of(name, broker.TOOL, label, size, count, rates,
                                   seconds=time.monotonic() - started, measured_at=measured_at))
    return ceilings


def broker_module(name: str) -> ModuleType:
    return importlib.import_module(f"queuebench.ceilings.{name}")


def markdown_document(ceilings: list[Ceiling]) -> str:
    notes = "\n\n".join(f"### {name}\n\n{inspect.cleandoc(broker_module(name).__doc__)}"
                        for name in dict.fromkeys(c.broker for c in ceilings))
    return (f"# Ceilings: each broker's own load tool\n\n"
            f"Measured on {os.cpu_count()} CPUs by `python -m queuebench.ceilings` (`make "
            f"ceilings`). MB = 10^6 bytes; seconds is the wall clock of the whole measurement "
            f"(tool start, warm-up, both directions).\n\n{markdown_table(ceilings)}\n"
            f"## How each tool ran\n\n{notes}\n")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.CRITICAL)  # the clients' own logs of refused connections
    arguments = build_parser().parse_args(argv)
    brokers = {name: broker_module(name) for name in dict.fromkeys(arguments.broker or BROKERS)}
    try:
        earlier = load_ceilings(arguments.output)
        sizes = ([("", size) for size in arguments.sizes] if arguments.sizes
                 else stock_sizes())
    except QueuebenchError as error:
        print(error, file=sys.stderr)
        return error.exit_code
    measured: list[Ceiling] = []
    skipped = {}
    for name, broker in brokers.items():
        spec = SERVICES[broker.SERVICE]
        if not answers(broker):
            skipped[name] = (f"{broker.SERVICE} does not answer at 127.0.0.1:{spec.port}; "
                             "start it with: make services-up")
            print(f"{name}: not measured: {skipped[name]}", file=sys.stderr)
            continue
        measured += measure(name, broker, sizes, arguments.messages)
    if not measured:
        print("no ceiling was measured", file=sys.stderr)
        return EXIT_NONE_RAN
    # A run of some brokers keeps the rows of the others from earlier runs.
    renewed = {c.broker for c in measured}
    ceilings = [c for c in earlier if c.broker not in renewed] + measured
    ceilings.sort(key=lambda c: (BROKERS.index(c.broker), c.size_bytes))
    print(markdown_table(ceilings), end="")
    try:
        for path in (arguments.output, arguments.markdown):
            path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(arguments.output, to_document(ceilings, skipped))
        write_atomically(arguments.markdown, markdown_document(ceilings))
    except OSError as error:
        print(f"cannot write the ceilings: {error}", file=sys.stderr)
        return EXIT_NONE_RAN
    print(f"written: {arguments.output}, {arguments.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
