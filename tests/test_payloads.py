"""Stock-update payloads: the stock db, the codecs, the builder and the size table."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from queuebench.errors import UsageError
from queuebench.payloads import (
    DEFAULT_STOCK_DB_URL,
    FORMATS,
    PayloadBuilder,
    StockRecord,
    decode,
    encode,
    fetch_records,
    open_stock_db,
    payload_sizes,
)
from queuebench.payloads.stockdb import PRODUCT_ROWS, stock_items

SEED_JSON_BYTES_10K = 1_724_183  # seed 003: 10,000 records as json.dumps


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One filled SQLite stock db shared by the read-only tests of this module."""
    return f"sqlite:///{tmp_path_factory.mktemp('stockdb') / 'stock.sqlite'}"


@pytest.fixture(scope="module")
def engine(db_url: str):
    engine = open_stock_db(db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def records_10k(engine) -> list[StockRecord]:
    return fetch_records(engine, 10_000, 0)


def test_default_url_is_sqlite_under_state() -> None:
    """The default stock db is a SQLite file in .state/ relative to the working directory."""
    assert DEFAULT_STOCK_DB_URL == "sqlite:///.state/stock.sqlite"


def test_open_creates_the_default_folder_only(tmp_path) -> None:
    """The default database's folder (.state/) is made on first use; a folder the user named
    that does not exist is refused, so a typo does not fill a database somewhere new."""
    engine = open_stock_db(DEFAULT_STOCK_DB_URL)  # the tests run in tmp_path
    try:
        assert (tmp_path / ".state" / "stock.sqlite").is_file()
        assert len(fetch_records(engine, 3, 0)) == 3
    finally:
        engine.dispose()
    with pytest.raises(UsageError, match=r"folder .*a/b does not exist"):
        open_stock_db(f"sqlite:///{tmp_path / 'a' / 'b' / 'stock.sqlite'}")
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_is_exact(fmt: str, engine) -> None:
    """decode(encode(records, fmt), fmt) gives back equal records, for every format."""
    records = fetch_records(engine, 250, 1_234)
    data = encode(records, fmt)
    assert isinstance(data, bytes)
    assert decode(data, fmt) == records


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_of_empty_batch(fmt: str) -> None:
    """An empty batch encodes and decodes to an empty list."""
    assert decode(encode([], fmt), fmt) == []


def test_json_is_compact_records_wrapper(engine) -> None:
    """JSON is {"records":[...]} with compact separators and one flat dict per record."""
    data = encode(fetch_records(engine, 2, 0), "json")
    assert data.startswith(b'{"records":[{"sku":"SKU-')
    assert b", " not in data and b": " not in data


def test_json_bytes_per_record_near_seed(records_10k: list[StockRecord]) -> None:
    """JSON costs 150-200 bytes a record; 10,000 records are within 10% of the seed's size."""
    size_100 = len(encode(records_10k[:100], "json"))
    assert 150 <= size_100 / 100 <= 200
    size_10k = len(encode(records_10k, "json"))
    assert 150 <= size_10k / 10_000 <= 200
    assert abs(size_10k - SEED_JSON_BYTES_10K) <= 0.10 * SEED_JSON_BYTES_10K


def test_protobuf_at_least_three_times_smaller(records_10k: list[StockRecord]) -> None:
    """Protobuf is at least 3x smaller than JSON for the same records (seed: about 3.5x)."""
    json_size = len(encode(records_10k, "json"))
    proto_size = len(encode(records_10k, "protobuf"))
    assert json_size >= 3 * proto_size


def test_fetch_returns_count_in_table_order(engine) -> None:
    """fetch_records returns exactly `count` records, consecutive rows from `offset`."""
    first = fetch_records(engine, 10, 0)
    assert len(first) == 10
    assert fetch_records(engine, 5, 5) == first[5:]
    assert fetch_records(engine, 0, 0) == []


def test_fetch_wraps_around(engine) -> None:
    """Past the last row fetch_records continues at row 0; offsets are taken mod the row count."""
    tail = fetch_records(engine, 5, PRODUCT_ROWS - 5)
    head = fetch_records(engine, 5, 0)
    assert fetch_records(engine, 10, PRODUCT_ROWS - 5) == tail + head
    assert fetch_records(engine, 7, PRODUCT_ROWS * 3 + 2) == fetch_records(engine, 7, 2)


def test_fetch_more_than_table_repeats_rows(engine) -> None:
    """Asking for more records than the table holds cycles through it again."""
    records = fetch_records(engine, PRODUCT_ROWS + 3, 1)
    assert len(records) == PRODUCT_ROWS + 3
    assert records[PRODUCT_ROWS:] == records[:3]


def test_fill_is_deterministic(tmp_path, engine) -> None:
    """Two fresh databases hold the same rows: payloads do not depend on the machine."""
    other = open_stock_db(f"sqlite:///{tmp_path / 'other.sqlite'}")
    try:
        assert fetch_records(other, 300, 7_000) == fetch_records(engine, 300, 7_000)
    finally:
        other.dispose()


def test_db_is_filled_once_and_reused(tmp_path) -> None:
    """A second open reuses the rows: an edit made after the first fill survives the reopen."""
    url = f"sqlite:///{tmp_path / 'stock.sqlite'}"
    first = open_stock_db(url)
    with first.begin() as conn:
        conn.execute(update(stock_items).where(stock_items.c.pos == 0).values(quantity=-42))
    first.dispose()

    second = open_stock_db(url)
    try:
        with second.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(stock_items)) == PRODUCT_ROWS
        assert fetch_records(second, 1, 0)[0].quantity == -42
    finally:
        second.dispose()


def test_builder_builds_consecutive_batches(db_url: str, engine) -> None:
    """Message i holds rows [i*records, (i+1)*records), encoded in the builder's format."""
    with PayloadBuilder(stock_db_url=db_url, fmt="protobuf", records=50) as builder:
        assert decode(builder.build(0), "protobuf") == fetch_records(engine, 50, 0)
        assert decode(builder.build(3), "protobuf") == fetch_records(engine, 50, 150)
        bodies = builder.build_many(3)
        assert bodies == [builder.build(0), builder.build(1), builder.build(2)]


def test_builder_wraps_past_the_table(db_url: str, engine) -> None:
    """Indexes beyond the table wrap around instead of returning short batches."""
    builder = PayloadBuilder(stock_db_url=db_url, fmt="json", records=100)
    try:
        last = PRODUCT_ROWS // 100  # first index that starts past the end
        assert decode(builder.build(last), "json") == fetch_records(engine, 100, 0)
    finally:
        builder.close()


def test_builder_default_is_100_json_records(db_url: str) -> None:
    """By default a message is 100 records of JSON."""
    builder = PayloadBuilder(stock_db_url=db_url)
    try:
        assert len(decode(builder.build(0), "json")) == 100
    finally:
        builder.close()


@pytest.mark.parametrize("bad", ["xml", "JSON", ""])
def test_unknown_format_raises_value_error(bad: str, db_url: str) -> None:
    """An unknown format is a ValueError that names the known formats, everywhere."""
    for call in (
        lambda: encode([], bad),
        lambda: decode(b"", bad),
        lambda: PayloadBuilder(stock_db_url=db_url, fmt=bad),
    ):
        with pytest.raises(ValueError, match="json, protobuf, pickle"):
            call()


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_builder_rejects_bad_record_count(bad, db_url: str) -> None:
    """records must be an int >= 1."""
    with pytest.raises(ValueError, match="records per message"):
        PayloadBuilder(stock_db_url=db_url, records=bad)


def test_protobuf_rejects_non_canonical_timestamp() -> None:
    """A timestamp protobuf could not give back unchanged is refused, not silently altered."""
    record = StockRecord("SKU-1", "JNB", 1, 0, 100, "ZAR", 1, "A01-01", "2024-05-01T08:15:42.5Z")
    with pytest.raises(ValueError, match="updated_at"):
        encode([record], "protobuf")


def test_payload_sizes_cover_every_count_and_format(db_url: str, engine) -> None:
    """payload_sizes gives one entry per (count, format), each the length of that message."""
    sizes = payload_sizes(stock_db_url=db_url, counts=(100, 1_000))
    assert [(s.records, s.fmt) for s in sizes] == [
        (count, fmt) for count in (100, 1_000) for fmt in FORMATS
    ]
    by_key = {(s.records, s.fmt): s.bytes for s in sizes}
    assert by_key[(100, "json")] == len(encode(fetch_records(engine, 100, 0), "json"))
    assert by_key[(1_000, "json")] > 9 * by_key[(100, "json")]
