"""`results.csv` beside `results.json`: one row per result, for spreadsheets.

Columns carry the seed's field names: the config first, then the status (and in a merged run,
the run that measured the row: `part_run`, `part_started_at`, `part_commit`), then every scalar
measurement; a summary such as `latency_ms` is spread over `latency_ms_p50`, `latency_ms_p99`...
(its scalars only: `payload` gives `payload_kind`, `capped` gives `capped_reason`). Lists
(sequence numbers, per-second series, burst stages, mix kinds, search probes) and the encoded
histogram stay in results.json.
"""

from __future__ import annotations

import csv
import io

# Kept in results.json only: too long for a cell, and no spreadsheet can read it.
LEFT_OUT = {"latency_histogram"}
SCALARS = (str, int, float, bool, type(None))


def flat_row(result: dict) -> dict[str, object]:
    """A result as one flat row: config fields, status and error, then measurements."""
    row = {key: value if isinstance(value, SCALARS) else str(value)
           for key, value in result["config"].items()}
    row |= {"status": result["status"], "error": result["error"]}
    for key, value in (result.get("part") or {}).items():  # the run a merged row came from
        row[f"part_{key}"] = value
    for key, value in result["measurements"].items():
        if key in LEFT_OUT:
            continue
        if isinstance(value, dict):
            # A measurement of the same name wins: `payload` {"bytes": 50} against `payload_bytes`.
            for part, inner in value.items():
                if isinstance(inner, SCALARS) and f"{key}_{part}" not in result["measurements"]:
                    row[f"{key}_{part}"] = inner
        elif isinstance(value, SCALARS):
            row[key] = value
    return row


def results_csv(document: dict) -> str:
    rows = [flat_row(result) for result in document["results"]]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
