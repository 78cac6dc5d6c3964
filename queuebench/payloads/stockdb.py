"""The stock database the producer queries to build each payload.

`open_stock_db(url)` creates the tables and fills them once with a deterministic set of
20,000 stock rows (5,000 SKUs in 4 warehouses, seeded RNG); later opens reuse the rows.
Any SQLAlchemy URL works: the default SQLite file, or ``postgresql+psycopg://...``.
`fetch_records(engine, count, offset)` reads `count` rows in table order, wrapping around.
"""

from __future__ import annotations

import random
import weakref
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    case,
    create_engine,
    insert,
    or_,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, OperationalError

from queuebench.errors import QueuebenchError, UsageError
from queuebench.payloads.records import TIMESTAMP_FORMAT, StockRecord
from queuebench.redact import redact

DEFAULT_STOCK_DB_URL = "sqlite:///.state/stock.sqlite"

WAREHOUSES = ("JNB", "CPT", "DUR", "PLZ")
SKUS = 5_000
PRODUCT_ROWS = SKUS * len(WAREHOUSES)  # 20,000
FILL_SEED = 3  # seed 003, the post this project reproduces
FILL_VERSION = "1"  # bump when the schema or the fill changes

_metadata = MetaData()

stock_items = Table(
    "qb_stock_items",
    _metadata,
    # 0..PRODUCT_ROWS-1; the order fetch_records walks (and wraps) in.
    Column("pos", Integer, primary_key=True, autoincrement=False),
    Column("sku", String(16), nullable=False),
    Column("warehouse", String(8), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("reserved", Integer, nullable=False),
    Column("price_cents", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("supplier_id", Integer, nullable=False),
    Column("bin", String(8), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("sku", "warehouse", name="uq_qb_stock_items_sku_warehouse"),
)

stock_meta = Table(
    "qb_stock_meta",
    _metadata,
    Column("key", String(32), primary_key=True),
    Column("value", String(64), nullable=False),
)

# Row count per engine, read once so that each fetch_records is a single query.
_row_counts: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def _generate_rows() -> list[dict]:
    """The deterministic fill: same rows on every machine and every backend."""
    rng = random.Random(FILL_SEED)
    epoch = datetime(2024, 1, 1, tzinfo=UTC)
    year = 366 * 24 * 3600
    rows: list[dict] = []
    for i in range(SKUS):
        sku = f"SKU-{i + 1:06d}"
        price_cents = rng.randint(1, 2_000) * 100 - 1  # R0.99 .. R1,999.99
        supplier_id = rng.randint(1, 400)
        for w, warehouse in enumerate(WAREHOUSES):
            quantity = 0 if rng.random() < 0.05 else rng.randint(1, 2_500)
            aisle, rack, shelf = rng.choice("ABCDEFGH"), rng.randint(1, 40), rng.randint(1, 24)
            rows.append(
                {
                    "pos": i * len(WAREHOUSES) + w,
                    "sku": sku,
                    "warehouse": warehouse,
                    "quantity": quantity,
                    "reserved": rng.randint(0, quantity // 5),
                    "price_cents": price_cents,
                    "currency": "ZAR",
                    "supplier_id": supplier_id,
                    "bin": f"{aisle}{rack:02d}-{shelf:02d}",
                    "updated_at": epoch + timedelta(seconds=rng.randrange(year)),
                }
            )
    return rows


def _check_sqlite_folder(url: str) -> None:
    """Make the default database's folder; refuse a folder the user named that is not there
    (a typo would otherwise fill a database in a new folder and report success)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).parent
    if url == DEFAULT_STOCK_DB_URL:
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        raise UsageError(f"stock database folder {folder} does not exist; create it or point "
                         "--stock-db elsewhere")


def _read_meta(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(stock_meta.c.key, stock_meta.c.value)).all())


def _check_meta(meta: dict[str, str], url: str) -> int:
    if meta.get("fill_version") != FILL_VERSION:
        raise QueuebenchError(
            f"stock db {redact(url)} was filled by fill_version {meta.get('fill_version')!r}, "
            f"this code expects {FILL_VERSION!r}: drop the qb_stock_* tables "
            "(or delete the SQLite file) and open it again"
        )
    return int(meta["rows"])


def open_stock_db(url: str = DEFAULT_STOCK_DB_URL) -> Engine:
    """Engine for the stock db at `url`; creates and fills the tables on first use only.

    Safe when several processes open a fresh db at once: the fill and its marker row in
    qb_stock_meta commit together, and a loser of the race just reads the winner's rows.
    A URL that is wrong, names no database or reaches none is one QueuebenchError line.
    """
    shown = redact(url)
    try:
        _check_sqlite_folder(url)
        return _open_and_fill(url)
    except (ArgumentError, ValueError) as exc:  # also NoSuchModuleError: an unknown dialect
        raise UsageError(f"malformed stock database URL {shown!r} ({redact(str(exc))}): "
                         "expected a SQLAlchemy URL such as sqlite:///.state/stock.sqlite or "
                         "postgresql+psycopg://USER@HOST/DATABASE") from None
    except ImportError as exc:
        raise UsageError(f"stock database URL {shown!r} needs the driver {exc.name!r}, which is "
                         "not installed; for PostgreSQL use postgresql+psycopg://...") from None
    except OperationalError as exc:
        reason = redact(str(exc.orig).strip().splitlines()[0])
        raise QueuebenchError(f"cannot open the stock database {shown}: {reason}") from None
    except DatabaseError as exc:
        reason = redact(str(exc.orig).strip().splitlines()[0])
        raise UsageError(f"stock database {shown} is not usable ({reason}); point --stock-db "
                         "at a database queuebench may fill, or a new file") from None


def _open_and_fill(url: str) -> Engine:
    engine = create_engine(url)
    try:
        _metadata.create_all(engine)  # checkfirst: a no-op once the tables exist
    except DatabaseError:
        _metadata.create_all(engine)  # lost a CREATE TABLE race: the tables exist now
    meta = _read_meta(engine)
    if not meta:
        try:
            with engine.begin() as conn:
                conn.execute(
                    insert(stock_meta),
                    [
                        {"key": "fill_version", "value": FILL_VERSION},
                        {"key": "rows", "value": str(PRODUCT_ROWS)},
                        {"key": "seed", "value": str(FILL_SEED)},
                    ],
                )
                conn.execute(insert(stock_items), _generate_rows())
        except (IntegrityError, OperationalError):
            # Another process filled it first (or holds the write lock while it does).
            meta = _read_meta(engine)
            if not meta:
                raise
        else:
            meta = _read_meta(engine)
    _row_counts[engine] = _check_meta(meta, url)
    return engine


def _row_count(engine: Engine) -> int:
    count = _row_counts.get(engine)
    if count is None:
        count = _row_counts[engine] = _check_meta(_read_meta(engine), str(engine.url))
    return count


def _to_record(row) -> StockRecord:
    updated_at: datetime = row.updated_at
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones.
    updated_at = (
        updated_at.replace(tzinfo=UTC) if updated_at.tzinfo is None else updated_at.astimezone(UTC)
    )
    return StockRecord(
        sku=row.sku,
        warehouse=row.warehouse,
        quantity=row.quantity,
        reserved=row.reserved,
        price_cents=row.price_cents,
        currency=row.currency,
        supplier_id=row.supplier_id,
        bin=row.bin,
        updated_at=updated_at.strftime(TIMESTAMP_FORMAT),
    )


def fetch_records(engine: Engine, count: int, offset: int) -> list[StockRecord]:
    """`count` records starting at row `offset` (mod the row count), wrapping to row 0.

    One SELECT per call. If `count` exceeds the table, the rows repeat in order.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return []
    total = _row_count(engine)
    start = offset % total
    take = min(count, total)
    end = start + take
    pos = stock_items.c.pos
    query = select(stock_items)
    if end <= total:
        query = query.where(pos >= start, pos < end).order_by(pos)
    else:
        query = query.where(or_(pos >= start, pos < end - total)).order_by(
            case((pos >= start, 0), else_=1), pos
        )
    with engine.connect() as conn:
        records = [_to_record(row) for row in conn.execute(query)]
    if count > take:
        records = (records * -(-count // take))[:count]
    return records
