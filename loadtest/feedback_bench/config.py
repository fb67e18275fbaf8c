"""The benchmark's settings (BenchConfig, with their bounds) and the error that stops a run."""

from __future__ import annotations

from dataclasses import dataclass

MAX_POSTS = 1_000_000
MAX_CONCURRENCY = 1024
VERIFY_RESERVE_S = 30.0  # of --max-total-s, kept for the export and the checks


class BenchError(Exception):
    """The benchmark could not run (bad URL, database unreachable, server never started)."""


@dataclass(frozen=True, slots=True)
class BenchConfig:
    db_url: str
    posts: int = 10_000
    concurrency: int = 32
    retry_fraction: float = 0.1
    kill_at: float | None = None  # fraction of the posts sent before SIGKILL; None: no kill
    max_total_s: float = 600.0
    request_timeout_s: float = 30.0
    keep_db: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.posts <= MAX_POSTS:
            raise ValueError(f"posts must be between 1 and {MAX_POSTS}, got {self.posts}")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}, got {self.concurrency}")
        if not 0 <= self.retry_fraction <= 1:
            raise ValueError(f"retry_fraction must be between 0 and 1, got {self.retry_fraction:g}")
        if self.kill_at is not None and not 0 < self.kill_at < 1:
            raise ValueError(
                f"kill_at must be strictly between 0 and 1 (a fraction of the posts), got {self.kill_at:g}"
            )
        if not self.max_total_s > VERIFY_RESERVE_S:
            raise ValueError(f"max_total_s must be above {VERIFY_RESERVE_S:g} s, got {self.max_total_s:g}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be positive, got {self.request_timeout_s:g}")
