"""RQ's JSONSerializer, able to carry bytes, for `rq worker --serializer` and `rq.Queue`.

RQ's own `rq.serializers.JSONSerializer` refuses a bytes argument (JSON has no bytes); this one
writes bytes as `{"__bytes__": "<base64>"}` and reads them back, so the job function is the same
as with pickle and the handler gets the payload as sent. Nothing else changes.

Kept apart from `queuebench.adapters.rq` on purpose: the worker imports its serializer before it
forks, and that module imports the handler, which RQ's stock worker otherwise imports in each
work horse; importing it here would make this variant faster for a reason other than JSON.
"""

from __future__ import annotations

import base64
import json

import rq.serializers

BYTES_TAG = "__bytes__"


def _bytes_as_base64(value: object) -> dict[str, str]:
    if isinstance(value, bytes | bytearray | memoryview):
        return {BYTES_TAG: base64.b64encode(value).decode("ascii")}
    raise TypeError(f"RQ's JSON serializer cannot carry a {type(value).__name__}")


def _bytes_from_base64(obj: dict[str, object]) -> object:
    if len(obj) == 1 and isinstance(obj.get(BYTES_TAG), str):
        return base64.b64decode(obj[BYTES_TAG], validate=True)
    return obj


class JSONSerializer(rq.serializers.JSONSerializer):
    @staticmethod
    def dumps(obj: object) -> bytes:
        return json.dumps(obj, default=_bytes_as_base64).encode("utf-8")

    @staticmethod
    def loads(data: bytes) -> object:
        return json.loads(data.decode("utf-8"), object_hook=_bytes_from_base64)
