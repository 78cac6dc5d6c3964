"""Encode a batch of StockRecord to bytes and back, in each format the benchmark compares.

- json: ``{"records":[{...},...]}``, compact separators, UTF-8.
- protobuf: ``queuebench.StockUpdateBatch`` (stock.proto); updated_at travels as Unix seconds.
- pickle: the list of StockRecord, highest protocol. Only decode pickles you produced.

``decode(encode(records, fmt), fmt) == records`` for every format.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from datetime import UTC, datetime

from queuebench.payloads import stock_pb2
from queuebench.payloads.records import TIMESTAMP_FORMAT, StockRecord

FORMATS = ("json", "protobuf", "pickle")
# A payload of raw bytes (`payload: {bytes: N}`): no stock records, carried and decoded as is.
RAW = "raw"


def check_format(fmt: str) -> str:
    """Return `fmt` if it is one of FORMATS, else raise ValueError naming them."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown payload format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return fmt


def _as_dict(r: StockRecord) -> dict:
    return {
        "sku": r.sku,
        "warehouse": r.warehouse,
        "quantity": r.quantity,
        "reserved": r.reserved,
        "price_cents": r.price_cents,
        "currency": r.currency,
        "supplier_id": r.supplier_id,
        "bin": r.bin,
        "updated_at": r.updated_at,
    }


def _to_epoch(updated_at: str) -> int:
    # Only the canonical form survives the trip through Unix seconds unchanged.
    if len(updated_at) != 20 or updated_at[-1] != "Z":
        raise ValueError(f"updated_at must look like 2024-05-01T08:15:42Z, got {updated_at!r}")
    return int(datetime.fromisoformat(updated_at).timestamp())


def _from_epoch(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime(TIMESTAMP_FORMAT)


def encode(records: Sequence[StockRecord], fmt: str) -> bytes:
    """Serialise `records` as one message body in format `fmt` (one of FORMATS); with RAW,
    `records` is the body's bytes already."""
    if fmt == RAW:
        return bytes(records)
    check_format(fmt)
    if fmt == "json":
        body = {"records": [_as_dict(r) for r in records]}
        return json.dumps(body, separators=(",", ":")).encode()
    if fmt == "protobuf":
        batch = stock_pb2.StockUpdateBatch()
        add = batch.records.add
        for r in records:
            add(
                sku=r.sku,
                warehouse=r.warehouse,
                quantity=r.quantity,
                reserved=r.reserved,
                price_cents=r.price_cents,
                currency=r.currency,
                supplier_id=r.supplier_id,
                bin=r.bin,
                updated_at=_to_epoch(r.updated_at),
            )
        return batch.SerializeToString()
    return pickle.dumps(list(records), protocol=pickle.HIGHEST_PROTOCOL)


def decode(data: bytes, fmt: str) -> list[StockRecord] | bytes:
    """Inverse of encode: the records of one message body in format `fmt` (RAW: its bytes)."""
    if fmt == RAW:
        return data
    check_format(fmt)
    if fmt == "json":
        body = json.loads(data)
        return [StockRecord(**item) for item in body["records"]]
    if fmt == "protobuf":
        batch = stock_pb2.StockUpdateBatch.FromString(data)
        return [
            StockRecord(
                sku=m.sku,
                warehouse=m.warehouse,
                quantity=m.quantity,
                reserved=m.reserved,
                price_cents=m.price_cents,
                currency=m.currency,
                supplier_id=m.supplier_id,
                bin=m.bin,
                updated_at=_from_epoch(m.updated_at),
            )
            for m in batch.records
        ]
    records = pickle.loads(data)  # trusted: written by our own producer
    if not isinstance(records, list) or not all(isinstance(r, StockRecord) for r in records):
        raise ValueError("pickle payload is not a list of StockRecord")
    return records
