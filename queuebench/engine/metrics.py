"""Latency statistics from an HDR histogram: fixed memory whatever the message count.

A result keeps its summary (`latency_ms`) and the histogram itself, encoded
(`latency_histogram`), so the repeats of a case can be merged into one distribution when a
report is made.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    merged = _new_histogram()
    for encoded in encoded_histograms:
        try:
            merged.add(HdrHistogram.decode(encoded))
        except Exception as exc:  # base64, zlib and hdrh's own cookie/length errors
            raise ValueError(f"not an encoded latency histogram ({exc})") from None
    return _summary(merged)


def rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None
