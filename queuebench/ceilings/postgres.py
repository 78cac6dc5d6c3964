"""PostgreSQL as a queue, the cheapest way psycopg 3 (the pairs' driver) offers, no library.

Produce: binary COPY into a queue table (id, body bytea), 1,000 rows per transaction.
Consume: `DELETE ... WHERE id IN (SELECT ... ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)
RETURNING body`, the claim-and-delete of a queue table, 1,000 rows per statement.
A logged table, as the pairs' tables are: each commit waits for the WAL flush.
"""

from __future__ import annotations

import os
import uuid

from queuebench.ceilings.ceiling import Rates, messages_for, timed
from queuebench.services import SERVICES

SERVICE = "postgres"
TOOL = "psycopg COPY / DELETE ... RETURNING"
BATCH = 1000


def default_messages(size_bytes: int) -> int:
    return messages_for(size_bytes, least=10_000, most=200_000, total_bytes=200_000_000)


def measure(size_bytes: int, messages: int) -> Rates:
    import psycopg

    body = os.urandom(size_bytes)
    table = f"qb_ceiling_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVICES[SERVICE].url, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, body bytea NOT NULL)")
        try:
            _, produce_sec = timed(produce, connection, table, body, messages)
            received, consume_sec = timed(consume, connection, table, messages)
        finally:
            connection.execute(f"DROP TABLE {table}")
    if received != messages:
        raise ValueError(f"PostgreSQL gave back {received} rows of the {messages} written")
    return Rates(messages / produce_sec, messages / consume_sec,
                 settings={"rows_per_transaction": BATCH, "copy": "binary", "table": "logged"})


def produce(connection, table: str, body: bytes, messages: int) -> None:
    with connection.cursor() as cursor:
        for start in range(0, messages, BATCH):
            with cursor.copy(f"COPY {table} (body) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["bytea"])
                for _ in range(min(BATCH, messages - start)):
                    copy.write_row((body,))


def consume(connection, table: str, messages: int) -> int:
    claim_and_delete = (f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id "
                        f"LIMIT {BATCH} FOR UPDATE SKIP LOCKED) RETURNING body")
    received = 0
    with connection.cursor(binary=True) as cursor:
        while received < messages:
            taken = len(cursor.execute(claim_and_delete).fetchall())
            if taken == 0:
                break
            received += taken
    return received
