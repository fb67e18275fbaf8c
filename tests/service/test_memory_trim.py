"""The memory trim: real freed memory handed back by the real malloc_trim, only when idle."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from model_store.engines.deterministic import DeterministicScorer
from service.activity import RequestActivity
from service.batching import Batcher
from service.memory_trim import MemoryTrimmer, find_memory_release, resident_mib
from service.metrics import ServiceMetrics
from service.model import LoadedModel, ModelHolder, ModelInfo
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(find_memory_release() is None or resident_mib() is None, reason="needs glibc and /proc")

# In a process of its own: fragment the C heap (objects over pymalloc's 512 bytes come from
# malloc; every 64th is kept, so freed runs sit between live ones and the heap cannot shrink
# from its top), then let the trimmer see an idle server.
FRAGMENTED_HEAP = textwrap.dedent(
    """
    import asyncio, json
    from service.activity import RequestActivity
    from service.memory_trim import MemoryTrimmer, find_memory_release, resident_mib

    activity = RequestActivity()
    trimmer = MemoryTrimmer(activity, find_memory_release(), idle_s=0.0)
    trimmer.model_served()
    start = resident_mib()
    blocks = [bytes(2000) + i.to_bytes(4, "little") for i in range(150_000)]
    kept = blocks[::64]
    del blocks
    freed = resident_mib()
    busy = RequestActivity()
    busy.started()
    while_busy = MemoryTrimmer(busy, find_memory_release(), idle_s=0.0)
    while_busy.baseline_mib = 0.0  # grown: only the request in flight holds it back
    trimmed_while_busy = asyncio.run(while_busy.trim_if_due())
    trimmed = asyncio.run(trimmer.trim_if_due())
    print(json.dumps({"start": start, "freed": freed, "after": resident_mib(), "trimmed": trimmed,
                      "trimmed_while_busy": trimmed_while_busy, "kept": len(kept)}))
    """
)


def test_freed_memory_goes_back_to_the_system_once_requests_pause() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FRAGMENTED_HEAP], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    figures = json.loads(done.stdout)
    assert figures["freed"] - figures["start"] > 200  # about 290 MiB allocated; freeing kept it resident
    assert figures["trimmed_while_busy"] is False  # a request in flight: never trims
    assert figures["trimmed"] is True
    assert figures["freed"] - figures["after"] > 150  # handed back


def test_no_trim_until_memory_has_grown_since_the_last_one() -> None:
    trimmer = MemoryTrimmer(RequestActivity(), find_memory_release(), idle_s=0.0, min_growth_mib=64.0)
    trimmer.model_served()
    assert asyncio.run(trimmer.trim_if_due()) is False  # nothing has grown since the model was served
    trimmer.baseline_mib = resident_mib() - 100  # as if a burst had added 100 MiB
    assert asyncio.run(trimmer.trim_if_due()) is True and trimmer.trims == 1
    assert asyncio.run(trimmer.trim_if_due()) is False  # the baseline is now what remained
    assert trimmer.trims == 1


def test_idle_means_no_request_in_flight_for_a_while() -> None:
    activity = RequestActivity()
    activity.started()
    time.sleep(0.05)
    assert activity.idle_for() == 0.0
    activity.started()
    activity.ended()
    time.sleep(0.05)
    assert activity.idle_for() == 0.0  # one is still in flight
    activity.ended()
    time.sleep(0.05)
    assert activity.idle_for() >= 0.05  # counted from the last one's end


def test_growth_counts_only_from_when_a_model_is_served() -> None:
    resident = [1000.0]  # MiB, as /proc would say
    trimmer = MemoryTrimmer(RequestActivity(), lambda: None, resident=lambda: resident[0], idle_s=0.0)
    resident[0] = 1500.0  # a model of 500 MiB loads: no model served yet, so no trim
    assert asyncio.run(trimmer.trim_if_due()) is False
    trimmer.model_served()  # the holder calls this the moment the model is served
    resident[0] = 1550.0  # a small burst
    assert asyncio.run(trimmer.trim_if_due()) is False
    resident[0] = 1600.0  # 100 MiB past the model: a burst's
    assert asyncio.run(trimmer.trim_if_due()) is True and trimmer.trims == 1


def test_memory_that_falls_below_the_baseline_lowers_it() -> None:
    """A swap takes the baseline with both models loaded; once the old one has drained, memory
    falls a model below it, and a burst must count from there."""
    resident = [1900.0]  # the new model is served beside the old one
    trimmer = MemoryTrimmer(RequestActivity(), lambda: None, resident=lambda: resident[0], idle_s=0.0)
    trimmer.model_served()
    resident[0] = 1500.0  # the old model's 400 MiB are gone
    assert asyncio.run(trimmer.trim_if_due()) is False and trimmer.baseline_mib == 1500.0
    resident[0] = 1600.0  # a burst of 100 MiB
    assert asyncio.run(trimmer.trim_if_due()) is True and trimmer.trims == 1


def test_the_holder_tells_the_trimmer_the_moment_a_model_is_served() -> None:
    """Not at the trimmer's next check, which may land in the middle of a burst and take the
    burst's memory for the model's (and then never trim it); on a swap too, and at once where a
    model is already served."""
    resident = [1000.0]
    trimmer = MemoryTrimmer(RequestActivity(), lambda: None, resident=lambda: resident[0])
    scorer = DeterministicScorer(version="1")
    info = ModelInfo(name="m", version="1", engine="deterministic", device="cpu", precision="fp32", max_length=512)
    model = LoadedModel(info=info, scorer=scorer, batcher=Batcher(scorer, Settings(engine="deterministic"), ServiceMetrics()))
    holder = ModelHolder()
    holder.when_set(trimmer.model_served)
    assert trimmer.baseline_mib is None
    resident[0] = 1400.0  # loaded
    holder.set(model)
    resident[0] = 1600.0  # a burst begins at once
    assert trimmer.baseline_mib == 1400.0
    resident[0] = 1900.0  # another model swapped in
    holder.set(model)
    assert trimmer.baseline_mib == 1900.0
    late = MemoryTrimmer(RequestActivity(), lambda: None, resident=lambda: resident[0])
    holder.when_set(late.model_served)
    assert late.baseline_mib == 1900.0


async def _task_names() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks()}


@pytest.mark.parametrize("enabled", [True, False])
def test_the_server_runs_the_trimmer_unless_told_not_to(enabled: bool) -> None:
    app = create_app(Settings(engine="deterministic", feedback_enabled=False, memory_trim=enabled))
    with TestClient(app) as client:
        assert ("plaudit-memory-trim" in client.portal.call(_task_names)) is enabled
