"""Stock-update payloads: the db the producer reads, the codecs, and message sizes.

``PayloadBuilder(fmt="protobuf", records=100).build(i)`` is the body of message i;
``decode(body, "protobuf")`` turns it back into a list of StockRecord.

Names are imported when first used: a consumer process decodes payloads with `codecs` and
must not pay for importing SQLAlchemy, which only the producer's stock database needs.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "PayloadBuilder": "builder",
    "FORMATS": "codecs", "decode": "codecs", "encode": "codecs",
    "SIZE_RECORD_COUNTS": "sizes", "PayloadSize": "sizes", "payload_sizes": "sizes",
    "StockRecord": "records",
    "DEFAULT_STOCK_DB_URL": "stockdb", "fetch_records": "stockdb", "open_stock_db": "stockdb",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
