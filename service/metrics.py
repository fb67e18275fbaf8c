"""Prometheus metrics, in a registry that belongs to one app (so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ITEM_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_TOKEN_BUCKETS = tuple(float(2**k) for k in range(4, 18))

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
# The label values the batcher uses (service.batching).
DROP_REASONS = ("cancelled", "deadline", "failed")
BATCH_TRIGGERS = ("full", "max_wait", "nothing_coming")


class ServiceMetrics:
    """Every metric the service exports. Batch sizes are histograms: mean = _sum / _count."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "plaudit_requests", "HTTP requests by endpoint and status.", ["endpoint", "status"], registry=r
        )
        self.request_duration = Histogram(
            "plaudit_request_duration_seconds",
            "Time from receiving a request to sending its response.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "plaudit_queue_wait_seconds",
            "Per item: time from being tokenized to its batch starting inference.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokenize = Histogram(
            "plaudit_tokenize_seconds",
            "Per request: time spent in Scorer.encode.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "plaudit_inference_seconds",
            "Per batch: time spent in Scorer.run.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_items = Histogram(
            "plaudit_batch_size_items", "Items per inference batch.", buckets=_ITEM_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "plaudit_batch_size_tokens",
            "Padded tokens per inference batch (items x longest item).",
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.batch_triggers = Counter(
            "plaudit_batch_triggers",
            "Why each batch closed: full, max_wait, or nothing_coming (no other work in flight).",
            ["trigger"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "plaudit_queue_depth",
            "Items accepted and not yet answered (tokenizing, queued or running).",
            registry=r,
        )
        self.dropped_items = Counter(
            "plaudit_dropped_items",
            "Items dropped before inference, by reason (cancelled, deadline, failed).",
            ["reason"],
            registry=r,
        )
        # Every known label value exists from the start (at 0), so rates and alerts on them
        # read 0 rather than "no data" until the first drop or the first batch of a kind.
        for reason in DROP_REASONS:
            self.dropped_items.labels(reason=reason)
        for trigger in BATCH_TRIGGERS:
            self.batch_triggers.labels(trigger=trigger)
        self.model_info = Gauge(
            "plaudit_model_info",
            "The model being served (value is always 1).",
            ["name", "version"],
            registry=r,
        )

    def set_model(self, name: str, version: str) -> None:
        """Point plaudit_model_info at the model now served (forgetting the previous one)."""
        self.model_info.clear()
        self.model_info.labels(name=name, version=version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
