"""PayloadBuilder: message `index` = `records` stock rows from the db, encoded in `fmt`.

Message i holds rows [i*records, (i+1)*records) of the stock table, wrapping around, so
a run's payloads are the same on every machine. Each build() is one db query plus encode.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import cache

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


class _PerMessage(Sequence[list[StockRecord]]):
    """`count` messages' records, each list made when message `seq` is asked for."""

    count: int

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if not -self.count <= index < self.count:
            raise IndexError(f"message {index} of {self.count}")
        return self._records_of(index % self.count)

    def _records_of(self, seq: int) -> list[StockRecord]:
        raise NotImplementedError


class RecordBatches(_PerMessage):
    """The records of messages 0..count-1, as PayloadBuilder.build would encode them, each list
    made when it is asked for: a million messages, or ten thousand of ten thousand records,
    cost the 20,000 stock rows and nothing per message. The engine encodes them inside its timed
    loop, as a user's producer would."""

    def __init__(self, rows: Sequence[StockRecord], records: int, count: int) -> None:
        self.rows, self.records, self.count = rows, records, count

    def _records_of(self, seq: int) -> list[StockRecord]:
        start = seq * self.records % len(self.rows)
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


class RawBodies(Sequence[bytes]):
    """`count` messages of `size` random bytes (the same block each, seeded: the same on every
    machine), for `payload: {bytes: N}`; encode(body, "raw") sends it as it is."""

    def __init__(self, size: int, count: int) -> None:
        self.body, self.count = random.Random(size).randbytes(size), count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self.body] * len(range(*index.indices(self.count)))
        if not -self.count <= index < self.count:
            raise IndexError(f"message {index} of {self.count}")
        return self.body


@cache
def mix_cycle(weights: tuple[int, ...]) -> tuple[int, ...]:
    """The kind (index into `weights`) of each message in one cycle of sum(weights) messages,
    interleaved as smooth weighted round-robin does: (6, 3, 1) gives 0 1 0 0 1 0 2 0 1 0, so
    any stretch of the run holds about its share of each kind."""
    current, cycle = [0] * len(weights), []
    for _ in range(sum(weights)):
        current = [c + w for c, w in zip(current, weights, strict=True)]
        kind = current.index(max(current))
        current[kind] -= sum(weights)
        cycle.append(kind)
    return tuple(cycle)


def mix_kind(seq: int, mix: Sequence[tuple[int, int]]) -> int:
    """Which kind of a mix of (records, weight) message `seq` is: decided by its number alone,
    so the engine knows which was which."""
    cycle = mix_cycle(tuple(weight for _, weight in mix))
    return cycle[seq % len(cycle)]


class MixedBatches(_PerMessage):
    """The records of messages 0..count-1 of a mix: message seq holds the records of its kind
    (mix_kind), taken from the stock table as RecordBatches takes them."""

    def __init__(self, rows: Sequence[StockRecord], mix: Sequence[tuple[int, int]],
                 count: int) -> None:
        self.mix, self.count = tuple(mix), count
        self.kinds = [RecordBatches(rows, records, count) for records, _ in self.mix]

    def _records_of(self, seq: int) -> list[StockRecord]:
        return self.kinds[mix_kind(seq, self.mix)][seq]


def message_bodies(stock_db_url: str, *, count: int, records: int = 0,
                   payload_bytes: int | None = None,
                   mix: Sequence[tuple[int, int]] | None = None) -> Sequence:
    """What messages 0..count-1 carry, encoded when each is sent: raw bytes of `payload_bytes`,
    a `mix` of record counts, or `records` stock records each."""
    if payload_bytes is not None:
        return RawBodies(payload_bytes, count)
    if mix:
        batches = record_batches(stock_db_url, 1, count)
        return MixedBatches(batches.rows, mix, count)
    return record_batches(stock_db_url, records, count)
