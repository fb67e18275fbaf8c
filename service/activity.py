"""How many requests are in flight, and since when none has been."""

from __future__ import annotations

import time


class RequestActivity:
    """Requests in flight and when the last one ended: kept by the request middleware (which
    counts the requests that MAX_CONCURRENT_REQUESTS limits), read by the memory trimmer (service.memory_trim)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.last_ended = time.monotonic()

    def started(self) -> None:
        self.in_flight += 1

    def ended(self) -> None:
        self.in_flight -= 1
        self.last_ended = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last request ended, 0 while one is in flight."""
        return 0.0 if self.in_flight else time.monotonic() - self.last_ended
