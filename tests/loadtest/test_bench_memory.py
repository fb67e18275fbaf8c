"""The memory benchmark: its peak reading on a real process, and a quick run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.bench_memory import PeakRss, main, rss_mib

ALLOCATOR = """
import sys, time
held = None
for line in sys.stdin:
    if line.strip() == "alloc":
        held = bytearray(200 * 1024 * 1024)
        held[::4096] = b"x" * len(held[::4096])  # a write to every page makes it resident
        time.sleep(0.2)  # long enough for the 10 ms sampling where VmHWM cannot be reset
    elif line.strip() == "free":
        held = None
    print("done", flush=True)
"""


def _tell(proc: subprocess.Popen[str], command: str) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"


def test_the_peak_of_a_phase_catches_memory_freed_before_it_ended() -> None:
    proc = subprocess.Popen([sys.executable, "-c", ALLOCATOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        before = rss_mib(proc.pid)
        with PeakRss(proc.pid) as peak:
            _tell(proc, "alloc")
            _tell(proc, "free")
        after = rss_mib(proc.pid)
        assert peak.mib >= before + 190  # the 200 MiB held for a moment
        assert after < before + 50  # and given back: only the peak saw it
        with PeakRss(proc.pid) as quiet:  # a new phase starts from the present, not the old peak
            _tell(proc, "free")
        assert quiet.mib < before + 50
    finally:
        proc.kill()
        proc.wait()


def test_a_quick_run_measures_each_server_and_the_limit_refuses_part_of_the_burst(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each batch takes 50 ms, so that the burst's 32 requests overlap and the limit of 4 bites.
    monkeypatch.setenv("PLAUDIT_ENGINE_OPTIONS", json.dumps({"delay_s": 0.05}))
    out = tmp_path / "memory.json"
    assert main(["--engine", "deterministic", "--quick", "--limits", "4", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    naive, limited, unbudgeted, untrimmed = results["rows"]
    assert [row["server"] for row in results["rows"]] == [
        "naive", "plaudit limit=4", "plaudit limit=4 no body budget", "plaudit limit=4 untrimmed"
    ]
    for row in (naive, limited, unbudgeted, untrimmed):
        assert all(row[key] > 0 for key in ("idle_mib", "steady_peak_mib", "burst_peak_mib", "after_mib"))
    assert naive["burst_outcomes"] == {"ok": 32}
    assert limited["burst_outcomes"].get("429", 0) > 0 and limited["burst_outcomes"]["ok"] > 0
    printed = capsys.readouterr().out
    assert "plaudit limit=4 / naive: idle x" in printed and "burst peak x" in printed
    assert "plaudit limit=4, 1 s after the burst:" in printed and "with the memory trim" in printed
    assert "plaudit limit=4, burst peak:" in printed and "with the body budget" in printed
