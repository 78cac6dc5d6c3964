"""PayloadBuilder: message `index` = `records` stock rows from the db, encoded in `fmt`.

Message i holds rows [i*records, (i+1)*records) of the stock table, wrapping around, so
a run's payloads are the same on every machine. Each build() is one db query plus encode.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from queuebench.payloads.codecs import check_format, encode
from queuebench.payloads.records import StockRecord
from queuebench.payloads.stockdb import (
    DEFAULT_STOCK_DB_URL,
    PRODUCT_ROWS,
    fetch_records,
    open_stock_db,
)


class PayloadBuilder:
    """Builds message bodies for the producer; opens the stock db on first build()."""

    def __init__(
        self, *, stock_db_url: str = DEFAULT_STOCK_DB_URL, fmt: str = "json", records: int = 100
    ) -> None:
        check_format(fmt)
        if isinstance(records, bool) or not isinstance(records, int) or records < 1:
            raise ValueError(f"records per message must be an int >= 1, got {records!r}")
        self.stock_db_url = stock_db_url
        self.fmt = fmt
        self.records = records
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_stock_db(self.stock_db_url)
        return self._engine

    def build(self, index: int) -> bytes:
        """Body of message `index` (>= 0): rows from index*records, wrapping, encoded."""
        if index < 0:
            raise ValueError(f"message index must be >= 0, got {index}")
        rows = fetch_records(self.engine, self.records, index * self.records)
        return encode(rows, self.fmt)

    def build_many(self, count: int, *, start: int = 0) -> list[bytes]:
        """Bodies of messages start .. start+count-1."""
        return [self.build(i) for i in range(start, start + count)]

    def close(self) -> None:
        """Release the db connections (the builder reopens them if used again)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> PayloadBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"PayloadBuilder(stock_db_url={self.stock_db_url!r}, fmt={self.fmt!r}, "
            f"records={self.records})"
        )


class RecordBatches(Sequence[list[StockRecord]]):
    """The records of messages 0..count-1, as PayloadBuilder.build would encode them, each list
    made when it is asked for: a million messages, or ten thousand of ten thousand records,
    cost the 20,000 stock rows and nothing per message. The engine encodes them inside its timed
    loop, as a user's producer would."""

    def __init__(self, rows: Sequence[StockRecord], records: int, count: int) -> None:
        self.rows, self.records, self.count = rows, records, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if not -self.count <= index < self.count:
            raise IndexError(f"message {index} of {self.count}")
        start = (index % self.count) * self.records % len(self.rows)
        end = start + self.records
        if end <= len(self.rows):
            return list(self.rows[start:end])
        return [self.rows[(start + k) % len(self.rows)] for k in range(self.records)]


def record_batches(stock_db_url: str, records: int, count: int) -> RecordBatches:
    """The records of messages 0..count-1 from one query of the stock table."""
    engine = open_stock_db(stock_db_url)
    try:
        rows = fetch_records(engine, PRODUCT_ROWS, 0)
    finally:
        engine.dispose()
    return RecordBatches(tuple(rows), records, count)
