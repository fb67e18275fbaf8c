"""Give memory back to the operating system once a burst of requests is over.

A burst of large bodies (hundreds of requests read and parsed at once, most then refused with
429) leaves the heap hundreds of MiB larger. Python frees the objects, but glibc's malloc keeps
the freed pages for reuse, so the server's resident memory stays at the burst's peak for good
(measured: about 680 MiB after such a burst, against 235 MiB before it; Benchmarks, Memory).
A full garbage collection, then `malloc_trim(0)`, hands the free pages back (to about 290 MiB
there). Both take a while on a large heap, holding the GIL or malloc's locks, which would stall
requests meanwhile, so they run only when no request has been in flight for IDLE_S seconds, and
only when resident memory has grown by at least MIN_GROWTH_MIB since the last trim, or since a
model began to be served (a model's own memory is not a burst's; ModelHolder tells the trimmer).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path

from service.activity import RequestActivity

log = logging.getLogger("plaudit.memory")

CHECK_INTERVAL_S = 5.0
IDLE_S = 2.0  # no request in flight for this long
MIN_GROWTH_MIB = 64.0


def status_kib(field: str, pid: int | str = "self") -> int:
    """A `field` of /proc/PID/status in KiB (VmRSS: resident now, VmHWM: its peak); OSError
    where /proc cannot be read, LookupError where it has no such field."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"no {field} in /proc/{pid}/status")


def resident_mib() -> float | None:
    """This process's resident memory (VmRSS), or None where /proc does not say."""
    try:
        return status_kib("VmRSS") / 1024
    except (OSError, LookupError):
        return None


def find_memory_release() -> Callable[[], None] | None:
    """A function that runs a full garbage collection, then glibc's malloc_trim(0); None on a
    C library without malloc_trim (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def collect_and_trim() -> None:
        # Garbage in reference cycles waits for a full collection, which may be long in coming
        # on a quiet server: collect first, or the trim finds little free (before the fix in
        # service.dispatch, refused requests' items sat in cycles, and a trim alone returned
        # 20 MiB after the benchmark's burst; collected first, 380).
        gc.collect()
        trim(0)

    return collect_and_trim


class MemoryTrimmer:
    """Runs `trim` off the event loop when requests have paused and memory has grown."""

    def __init__(
        self,
        activity: RequestActivity,
        trim: Callable[[], None],
        resident: Callable[[], float | None] = resident_mib,
        check_interval_s: float = CHECK_INTERVAL_S,
        idle_s: float = IDLE_S,
        min_growth_mib: float = MIN_GROWTH_MIB,
    ) -> None:
        self.activity = activity
        self.trim = trim
        self.resident = resident
        self.check_interval_s = check_interval_s
        self.idle_s = idle_s
        self.min_growth_mib = min_growth_mib
        self.baseline_mib: float | None = None  # resident after the last trim, or when a model began to be served
        self.trims = 0

    def model_served(self) -> None:
        """A model has just begun to be served (loaded, warmed up, swapped in): what is resident
        now is the model's, and only growth from here is a burst's. Called at that moment, before
        the first request reaches the model, rather than found at the next check, which may come
        in the middle of a burst and take the burst for the model (seen: a 91 MiB burst kept)."""
        self.baseline_mib = self.resident()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_s)
            await self.trim_if_due()

    async def trim_if_due(self) -> bool:
        """Trim if requests have paused and memory has grown since the last trim; whether it did."""
        if self.baseline_mib is None:
            return False  # no model served yet: growth now is a model loading, which stays
        now_mib = self.resident()
        if now_mib is None or self.activity.in_flight or self.activity.idle_for() < self.idle_s:
            return False
        if now_mib - self.baseline_mib < self.min_growth_mib:
            # Memory below the baseline is a lower floor to count from: after a swap, the old
            # model's memory goes once it has drained, below the baseline taken with both loaded.
            self.baseline_mib = min(self.baseline_mib, now_mib)
            return False
        started = time.perf_counter()
        await asyncio.to_thread(self.trim)
        took_ms = (time.perf_counter() - started) * 1000  # a request arriving meanwhile waited up to this
        self.trims += 1
        after = self.resident()
        self.baseline_mib = after
        if after is not None:
            log.info(
                "requests paused: returned %.0f MiB of freed memory to the system in %.0f ms (%.0f MiB resident now)",
                now_mib - after, took_ms, after,
            )
        return True


def make_trimmer(activity: RequestActivity) -> MemoryTrimmer | None:
    """A trimmer for this process, which counts growth from its `model_served()` on; None where
    malloc_trim or /proc/self/status is missing."""
    release = find_memory_release()
    if release is None:
        log.debug("no malloc_trim in this C library: freed memory stays with the process")
        return None
    if resident_mib() is None:
        log.debug("no /proc/self/status to read resident memory from: no memory trim")
        return None
    return MemoryTrimmer(activity, release)
