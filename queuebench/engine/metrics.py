"""Latency statistics from an HDR histogram: fixed memory whatever the message count.

A result keeps its summary (`latency_ms`) and the histogram itself, encoded
(`latency_histogram`), so the repeats of a case can be merged into one distribution when a
report is made.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from hdrh.histogram import HdrHistogram

# Microsecond resolution up to one hour, three significant digits (0.1% error on a percentile).
LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS = 1, 3_600_000_000, 3


def _new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def _record(latencies_ns: Iterable[int]) -> HdrHistogram:
    histogram = _new_histogram()
    for ns in latencies_ns:
        histogram.record_value(min(max(ns // 1000, LOWEST_US), HIGHEST_US))
    return histogram


def _summary(histogram: HdrHistogram) -> dict[str, float] | None:
    """hdrh's own min, max, mean, stddev and percentiles, computed over the counts array at
    once: hdrh walks every bucket in Python for each (0.7 s a histogram), which made a report
    over a few hundred cases take minutes. tests/test_report.py holds them to hdrh's figures."""
    total = histogram.get_total_count()
    if total == 0:
        return None
    counts = np.ctypeslib.as_array(histogram.counts)[:histogram.counts_len].astype(np.float64)
    index = np.arange(histogram.counts_len)
    # hdrh's get_value_from_index, and the width of the bucket each index stands for
    bucket = (index >> histogram.sub_bucket_half_count_magnitude) - 1
    sub_bucket = (index & (histogram.sub_bucket_half_count - 1)) + histogram.sub_bucket_half_count
    sub_bucket = np.where(bucket < 0, sub_bucket - histogram.sub_bucket_half_count, sub_bucket)
    bucket = np.maximum(bucket, 0)
    lowest = sub_bucket.astype(np.float64) * 2.0 ** (bucket + histogram.unit_magnitude)
    width = 2.0 ** (bucket + histogram.unit_magnitude)
    middle = lowest + np.floor(width / 2)
    mean = float(counts @ middle) / total
    cumulative = np.cumsum(counts)

    def percentile(p: float) -> float:
        at = int(np.searchsorted(cumulative, max(int(p * total / 100 + 0.5), 1)))
        return float(lowest[at] + width[at] - 1)  # hdrh's highest equivalent value

    stats = {
        "min": histogram.get_min_value(),
        "max": histogram.get_max_value(),
        "mean": mean,
        "stddev": math.sqrt(float(counts @ (middle - mean) ** 2) / total),
        "p50": percentile(50),
        "p95": percentile(95),
        "p99": percentile(99),
    }
    return {name: round(us / 1000, 3) for name, us in stats.items()}


def latency_ms(latencies_ns: Iterable[int]) -> dict[str, float] | None:
    """min max mean stddev p50 p95 p99 in milliseconds, or None when nothing was received."""
    return _summary(_record(latencies_ns))


def latency_summary_and_histogram(
        latencies_ns: Iterable[int]) -> tuple[dict[str, float] | None, str | None]:
    """(the `latency_ms` summary, the HDR histogram encoded as a base64 string for
    `measurements["latency_histogram"]`), from one pass over the latencies; (None, None) when
    nothing was received."""
    histogram = _record(latencies_ns)
    summary = _summary(histogram)
    return summary, histogram.encode().decode("ascii") if summary else None


def merged_latency_ms(encoded_histograms: Iterable[str]) -> dict[str, float] | None:
    """The `latency_ms` summary of several encoded histograms merged into one (the repeats of a
    case), or None when there is none or they hold nothing. Raises ValueError for a string that
    is not an encoded histogram."""
    summary = _merged_summary(tuple(encoded_histograms))
    return dict(summary) if summary else None


@lru_cache(maxsize=4096)  # a report asks for each case's merge in every section that shows it
def _merged_summary(encoded_histograms: tuple[str, ...]) -> dict[str, float] | None:
    merged = _new_histogram()
    for encoded in encoded_histograms:
        try:
            merged.add(HdrHistogram.decode(encoded))
        except Exception as exc:  # base64, zlib and hdrh's own cookie/length errors
            raise ValueError(f"not an encoded latency histogram ({exc})") from None
    return _summary(merged)


def rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None
