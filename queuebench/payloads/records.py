"""The stock record: what every payload carries, apart from the database it comes from.

Kept free of SQLAlchemy so that a consumer process decoding payloads imports only this.
"""

from __future__ import annotations

from dataclasses import dataclass

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the only form StockRecord.updated_at takes


@dataclass(frozen=True, slots=True)
class StockRecord:
    """One stock line: how many units of a SKU one warehouse holds, and at what price."""

    sku: str  # "SKU-004217"
    warehouse: str  # "JNB"
    quantity: int  # units on hand
    reserved: int  # units held for open orders
    price_cents: int  # unit price in minor units of currency
    currency: str  # ISO 4217
    supplier_id: int
    bin: str  # aisle+rack-shelf, "C07-12"
    updated_at: str  # UTC, exactly "2024-05-01T08:15:42Z" (TIMESTAMP_FORMAT)
