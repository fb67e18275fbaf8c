from __future__ import annotations

import math

import pytest

from loadtest.generator import LoadConfig, LoadResult, RequestRecord
from loadtest.report import LatencySummary, format_table, percentile, summarize


def test_percentile_interpolates_linearly() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_percentile_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="within"):
        percentile([1.0], 101)


def test_latency_summary_in_milliseconds() -> None:
    summary = LatencySummary.from_seconds([0.010, 0.020, 0.030, 0.040, 0.100])
    assert summary.p50_ms == pytest.approx(30.0)
    assert summary.p95_ms == pytest.approx(88.0)
    assert summary.p99_ms == pytest.approx(97.6)
    assert summary.max_ms == pytest.approx(100.0)
    assert summary.mean_ms == pytest.approx(40.0)


def _result(records: list[RequestRecord], elapsed_s: float = 2.0) -> LoadResult:
    config = LoadConfig(concurrency=2, requests=len(records), items_per_request=4)
    return LoadResult(config=config, records=records, elapsed_s=elapsed_s, stopped_by="requests")


def test_summarize_counts_ok_items_and_errors_by_outcome() -> None:
    records = [
        RequestRecord(0, 4, "ok", 0.010),
        RequestRecord(1, 4, "ok", 0.030),
        RequestRecord(2, 4, "503", 0.001),
        RequestRecord(3, 4, "503", 0.001),
        RequestRecord(4, 4, "timeout", 5.0),
        RequestRecord(5, 4, "ok", 0.020),
    ]
    report = summarize(_result(records, elapsed_s=2.0))
    assert (report.requests, report.ok, report.failed, report.unfinished) == (6, 3, 3, 0)
    assert report.items_ok == 12
    assert report.requests_per_s == pytest.approx(1.5)
    assert report.items_per_s == pytest.approx(6.0)
    assert report.errors == {"503": 2, "timeout": 1}
    # Percentiles are over successful requests only.
    assert report.latency.p50_ms == pytest.approx(20.0)
    assert report.latency.max_ms == pytest.approx(30.0)


def test_report_json_and_table() -> None:
    report = summarize(_result([RequestRecord(0, 4, "ok", 0.012), RequestRecord(1, 4, "429", 0.001)]))
    data = report.to_json()
    assert data["ok"] == 1 and data["errors"] == {"429": 1}
    assert data["latency"]["p50_ms"] == pytest.approx(12.0)
    table = format_table(report)
    assert "1 ok, 1 failed" in table and "429: 1" in table


def test_report_of_no_successes_has_null_latencies_in_json() -> None:
    report = summarize(_result([RequestRecord(0, 4, "connect_error", 0.001)]))
    assert report.to_json()["latency"]["p99_ms"] is None
    assert "p50 -" in format_table(report)


def test_requests_sent_again_are_reported_apart_and_only_when_there_are_some() -> None:
    # A kill -9 of a worker under load read "0 failed": the requests it held were quietly resent.
    records = [RequestRecord(0, 4, "ok", 0.010), RequestRecord(1, 4, "ok", 0.020)]
    config = LoadConfig(concurrency=2, requests=2, items_per_request=4)
    report = summarize(LoadResult(config=config, records=records, elapsed_s=1.0, stopped_by="requests", resent=1))
    assert report.resent == 1 and report.to_json()["resent"] == 1
    assert "resent      1 (their kept-alive connection was closed or reset under them)" in format_table(report)
    assert "resent" not in format_table(summarize(_result(records)))


def test_unfinished_requests_are_not_failures() -> None:
    records = [RequestRecord(0, 4, "ok", 0.010), RequestRecord(1, 4, "unfinished", 0.5)]
    report = summarize(_result(records))
    assert (report.ok, report.failed, report.unfinished, report.errors) == (1, 0, 1, {})
    assert "1 unfinished at the time cap" in format_table(report)


def test_a_compare_load_says_each_comparison_scores_two_items() -> None:
    # items/s counts scored items, so the header must say a comparison is two of them.
    config = LoadConfig(endpoint="compare", concurrency=2, requests=2, items_per_request=3)
    records = [RequestRecord(0, 6, "ok", 0.010), RequestRecord(1, 6, "ok", 0.010)]
    report = summarize(LoadResult(config=config, records=records, elapsed_s=1.0, stopped_by="requests"))
    table = format_table(report)
    assert "3 comparisons/request (6 items scored)" in table
    assert "12.0 items/s" in table
    assert "4 items/request" in format_table(summarize(_result([RequestRecord(0, 4, "ok", 0.010)])))
