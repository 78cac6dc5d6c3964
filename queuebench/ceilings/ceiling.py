"""One measured ceiling, the ceilings file, and the lookup a report uses.

The file (`reports/CEILINGS/ceilings.json` by default) holds one row per broker x message size,
with the rates the broker's own tool reached and the raw lines the rates came from.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from queuebench.errors import UsageError

DEFAULT_JSON = Path("reports/CEILINGS/ceilings.json")
DEFAULT_MARKDOWN = Path("reports/CEILINGS.md")
SCHEMA = "queuebench-ceilings/1"
# "About S bytes": the nearest measured size, if it is within this factor of S.
ABOUT_FACTOR = 2.0


@dataclass(frozen=True)
class Rates:
    """What one broker's tool measured at one size: messages per second each way."""

    produce_msg_s: float
    consume_msg_s: float
    settings: dict[str, object]  # how the tool was run and tuned
    raw: dict[str, str] = field(default_factory=dict)  # the tool's own result lines


@dataclass(frozen=True)
class Ceiling:
    broker: str
    tool: str
    label: str  # what the size stands for, e.g. "100 records json"; "" for a size asked for
    size_bytes: int
    messages: int
    produce_msg_s: float
    produce_mb_s: float
    consume_msg_s: float
    consume_mb_s: float
    seconds: float  # wall clock of the whole measurement: tool start, warm-up, both directions
    measured_at: str
    settings: dict[str, object]
    raw: dict[str, str]

    @classmethod
    def of(cls, broker: str, tool: str, label: str, size_bytes: int, messages: int,
           rates: Rates, *, seconds: float, measured_at: str) -> Ceiling:
        def mb_s(msg_s: float) -> float:
            return round(msg_s * size_bytes / 1e6, 3)  # MB = 10^6 bytes, as the pairs' figures

        return cls(broker, tool, label, size_bytes, messages,
                   round(rates.produce_msg_s, 1), mb_s(rates.produce_msg_s),
                   round(rates.consume_msg_s, 1), mb_s(rates.consume_msg_s),
                   round(seconds, 1), measured_at, rates.settings, rates.raw)


def load_ceilings(path: Path = DEFAULT_JSON) -> list[Ceiling]:
    """Every row of a ceilings file; [] when there is none. A broken file is an error."""
    if not path.is_file():
        return []
    try:
        document = json.loads(path.read_text())
        if document.get("schema") != SCHEMA:
            raise ValueError(f"schema is not {SCHEMA}")
        names = {f.name for f in fields(Ceiling)}
        return [Ceiling(**{k: v for k, v in row.items() if k in names})
                for row in document["ceilings"]]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UsageError(f"{path}: not a ceilings file ({error}); "
                              "measure again with: make ceilings") from None


def ceiling_at(broker: str, size_bytes: int, path: Path = DEFAULT_JSON) -> Ceiling | None:
    """The ceiling of `broker` measured at the size nearest `size_bytes` (within a factor of 2),
    or None when that broker was not measured near that size."""
    return nearest(load_ceilings(path), broker, size_bytes)


def nearest(rows: list[Ceiling], broker: str, size_bytes: int) -> Ceiling | None:
    """Of `rows`, the ceiling of `broker` at the size nearest `size_bytes`, within a factor of
    2; None when there is none that near."""
    rows = [row for row in rows if row.broker == broker]
    if not rows or size_bytes <= 0:
        return None
    found = min(rows, key=lambda row: abs(math.log(row.size_bytes / size_bytes)))
    ratio = found.size_bytes / size_bytes
    return found if 1 / ABOUT_FACTOR <= ratio <= ABOUT_FACTOR else None


def snapshot(path: Path = DEFAULT_JSON) -> list[dict[str, object]]:
    """The ceilings measured on this machine, as a run records them beside its results (the
    tools' raw lines left out); [] when none were measured or the file is broken."""
    try:
        rows = load_ceilings(path)
    except UsageError:
        return []
    return [{k: v for k, v in asdict(row).items() if k not in ("raw", "settings")}
            for row in rows]


def to_document(ceilings: list[Ceiling], skipped: dict[str, str]) -> str:
    return json.dumps({"schema": SCHEMA, "ceilings": [asdict(c) for c in ceilings],
                       "skipped": skipped}, indent=2) + "\n"


def markdown_table(ceilings: list[Ceiling]) -> str:
    lines = ["| broker | tool | size | produce msg/s | MB/s | consume msg/s | MB/s | N | seconds |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {c.broker} | {c.tool} | {c.size_bytes:,} B{f' ({c.label})' if c.label else ''} | "
              f"{c.produce_msg_s:,.0f} | {c.produce_mb_s:,.1f} | {c.consume_msg_s:,.0f} | "
              f"{c.consume_mb_s:,.1f} | {c.messages:,} | {c.seconds:,.1f} |" for c in ceilings]
    return "\n".join(lines) + "\n"


def messages_for(size_bytes: int, *, least: int, most: int, total_bytes: int) -> int:
    """Enough messages for `total_bytes`, between least and most: a tool needs a run long
    enough to warm up, and large messages need fewer of them."""
    return min(most, max(least, total_bytes // size_bytes))


def timed(action: Callable[..., Any], *args: object) -> tuple[Any, float]:
    """What action(*args) returned, and the seconds it took."""
    started = time.perf_counter()
    result = action(*args)
    return result, time.perf_counter() - started
