"""Prometheus metrics, in a registry that belongs to one app (so tests can run several).

A server of several worker processes uses prometheus_client's multiprocess mode instead:
every worker writes its values to the shared PROMETHEUS_MULTIPROC_DIR, and /metrics, whichever
worker answers it, adds them all up. Counters and histograms add up as they are; the queue
depth is the sum over live workers; the model info gauge keeps one series per worker (a `pid`
label), so a rollout shows which workers have the new version.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from service.settings import MULTIPROC_DIR_ENV

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ITEM_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_TOKEN_BUCKETS = tuple(float(2**k) for k in range(4, 18))

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST
# The label values the batcher uses (service.batching).
DROP_REASONS = ("cancelled", "deadline", "failed")
BATCH_TRIGGERS = ("full", "max_wait", "nothing_coming")
MODEL_INFO = "plaudit_model_info"


class MultiprocessUnavailable(RuntimeError):
    """Several workers, but prometheus_client was imported without its multiprocess mode."""


def multiprocess_enabled() -> bool:
    """Whether prometheus_client writes values to PROMETHEUS_MULTIPROC_DIR (decided at its import)."""
    return values.ValueClass is not values.MutexValue


class _ServedModelsOnly(Collector):
    """The shared directory's metrics, less the model info series that a worker set to 0 when
    it stopped serving that version (a file cannot forget a series; this hides them)."""

    def __init__(self, directory: Path) -> None:
        self._all = MultiProcessCollector(None, str(directory))

    def collect(self):  # type: ignore[no-untyped-def]
        for family in self._all.collect():
            if family.name == MODEL_INFO:
                family.samples = [sample for sample in family.samples if sample.value != 0]
            yield family


class ServiceMetrics:
    """Every metric the service exports. Batch sizes are histograms: mean = _sum / _count.

    `shared_directory`: the workers' PROMETHEUS_MULTIPROC_DIR when the server has several.
    """

    def __init__(self, shared_directory: Path | None = None) -> None:
        if shared_directory is not None and not multiprocess_enabled():
            raise MultiprocessUnavailable(
                f"several workers need {MULTIPROC_DIR_ENV} set before the service starts "
                "(prometheus_client reads it when imported); start with `plaudit serve --workers N`"
            )
        self.shared_directory = shared_directory
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
            multiprocess_mode="livesum",
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
            MODEL_INFO,
            "The model being served (value is always 1; with several workers, one series per worker pid).",
            ["name", "version"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self._served: tuple[str, str] | None = None

    def set_model(self, name: str, version: str) -> None:
        """Point plaudit_model_info at the model now served (forgetting the previous one)."""
        if self.shared_directory is None:
            self.model_info.clear()
        elif self._served is not None:
            # A file cannot forget a series: 0 marks it as no longer served, and render hides it.
            self.model_info.labels(*self._served).set(0)
        self.model_info.labels(name=name, version=version).set(1)
        self._served = (name, version)

    def render(self) -> bytes:
        if self.shared_directory is None:
            return generate_latest(self.registry)
        everyone = CollectorRegistry()
        everyone.register(_ServedModelsOnly(self.shared_directory))
        return generate_latest(everyone)
