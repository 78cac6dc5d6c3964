"""Encoded size of one stock-update message per record count and format.

The seed's reference numbers (10,000 records): JSON 1,724,183 bytes, protobuf 490,012.
Which broker limit each size fits is the report's business, not this module's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from queuebench.payloads.codecs import FORMATS, encode
from queuebench.payloads.stockdb import DEFAULT_STOCK_DB_URL, fetch_records, open_stock_db

SIZE_RECORD_COUNTS = (100, 5_000, 10_000)


@dataclass(frozen=True, slots=True)
class PayloadSize:
    """One message of `records` stock records encoded as `fmt` is `bytes` long."""

    records: int
    fmt: str
    bytes: int


def payload_sizes(
    stock_db_url: str = DEFAULT_STOCK_DB_URL, counts: Iterable[int] = SIZE_RECORD_COUNTS
) -> list[PayloadSize]:
    """Sizes of the first message (rows from offset 0) for every count x every format."""
    engine = open_stock_db(stock_db_url)
    try:
        sizes = []
        for count in counts:
            rows = fetch_records(engine, count, 0)
            sizes.extend(PayloadSize(count, fmt, len(encode(rows, fmt))) for fmt in FORMATS)
        return sizes
    finally:
        engine.dispose()
