"""Latency statistics from an HDR histogram: fixed memory whatever the message count."""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

# Microsecond resolution up to one hour, three significant digits (0.1% error on a percentile).
LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS = 1, 3_600_000_000, 3


def latency_ms(latencies_ns: Iterable[int]) -> dict[str, float] | None:
    """min max mean stddev p50 p95 p99 in milliseconds, or None when nothing was received."""
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
    for ns in latencies_ns:
        histogram.record_value(min(max(ns // 1000, LOWEST_US), HIGHEST_US))
    if histogram.get_total_count() == 0:
        return None
    stats = {
        "min": histogram.get_min_value(),
        "max": histogram.get_max_value(),
        "mean": histogram.get_mean_value(),
        "stddev": histogram.get_stddev(),
        "p50": histogram.get_value_at_percentile(50),
        "p95": histogram.get_value_at_percentile(95),
        "p99": histogram.get_value_at_percentile(99),
    }
    return {name: round(us / 1000, 3) for name, us in stats.items()}


def rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None
