"""Stock-update payloads: the db the producer reads, the codecs, and message sizes.

``PayloadBuilder(fmt="protobuf", records=100).build(i)`` is the body of message i;
``decode(body, "protobuf")`` turns it back into a list of StockRecord.
"""

from queuebench.payloads.builder import PayloadBuilder
from queuebench.payloads.codecs import FORMATS, decode, encode
from queuebench.payloads.sizes import SIZE_RECORD_COUNTS, PayloadSize, payload_sizes
from queuebench.payloads.stockdb import (
    DEFAULT_STOCK_DB_URL,
    StockRecord,
    fetch_records,
    open_stock_db,
)

__all__ = [
    "DEFAULT_STOCK_DB_URL",
    "FORMATS",
    "SIZE_RECORD_COUNTS",
    "PayloadBuilder",
    "PayloadSize",
    "StockRecord",
    "decode",
    "encode",
    "fetch_records",
    "open_stock_db",
    "payload_sizes",
]
