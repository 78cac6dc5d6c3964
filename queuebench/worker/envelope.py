"""The envelope every message travels in: a fixed header, then the payload.

The header holds the run id, the sequence number, the producer's send time in nanoseconds, the
payload length and an 8-byte BLAKE2b digest of the payload: a payload that arrives with other
bytes, even at the same length, is marked corrupt.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import time
import uuid
from dataclasses import dataclass

HEADER = struct.Struct(">4s16sQQI8s")  # magic, run id, seq, sent ns, payload length, digest
MAGIC = b"QBv2"
DIGEST_BYTES = 8


@dataclass(frozen=True)
class Envelope:
    run_id: str
    seq: int
    sent_ns: int
    payload_ok: bool  # the payload arrived with the length and the bytes it was sent with
    payload: memoryview  # the bytes after the header, not copied


def payload_digest(payload: bytes | memoryview) -> bytes:
    """A fast 8-byte digest: it sits in the timed path of both producer and consumer."""
    return hashlib.blake2b(payload, digest_size=DIGEST_BYTES).digest()


def wrap(run_id: uuid.UUID, seq: int, payload: bytes, sent_ns: int | None = None) -> bytes:
    """Frame `payload`. `sent_ns` is when it was meant to be sent (a paced producer's schedule,
    so that a producer that falls behind cannot hide latency); by default now, after hashing."""
    digest = payload_digest(payload)
    sent_ns = time.time_ns() if sent_ns is None else sent_ns
    return HEADER.pack(MAGIC, run_id.bytes, seq, sent_ns, len(payload), digest) + payload


def unwrap(message: bytes) -> Envelope:
    magic, run_id, seq, sent_ns, length, digest = HEADER.unpack_from(message)
    if magic != MAGIC:
        raise ValueError("not a queuebench message (bad magic)")
    payload = memoryview(message)[HEADER.size:]  # no copy of a large payload
    ok = len(payload) == length and payload_digest(payload) == digest
    return Envelope(_run_id_text(run_id), seq, sent_ns, payload_ok=ok, payload=payload)


@functools.lru_cache(maxsize=16)
def _run_id_text(raw: bytes) -> str:
    """A run's id as text, made once: a consumer sees the same few ids a million times, and
    building the UUID was a quarter of the handler's cost."""
    return str(uuid.UUID(bytes=raw))
