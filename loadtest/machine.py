"""What machine a benchmark ran on: CPU model, cores, and which int8 kernel ONNX Runtime uses.

CPU figures in the README swing with the machine a session gets, and int8 most of all: with
VNNI (or AMX) ONNX Runtime multiplies u8 x s8 exactly in one instruction; without it the
engine's exact-product setting (model_store.int8_products) makes it run the slower u8 x u8
kernel for 8-bit weights. Which of the two runs comes from the engine's own probe, not from
the flags; the flags are recorded beside it. Every benchmark result records this, so a ratio
is read against the right machine.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from model_store.int8_products import int8_kernel

# Flags (as /proc/cpuinfo spells them) that decide ONNX Runtime's int8 kernel on x86.
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def parse_cpuinfo(text: str) -> tuple[str | None, set[str]]:
    """The first processor's model name and flags, from /proc/cpuinfo's text."""
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def describe_machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    try:
        model, flags = parse_cpuinfo(cpuinfo.read_text())
    except OSError:
        model, flags = None, None
    machine = platform.machine()
    return {
        "cpu": model or platform.processor() or machine,
        "cores": os.cpu_count(),
        "machine": machine,
        "flags": sorted(f for f in REPORTED_FLAGS if flags and f in flags),
        "int8_kernel": int8_kernel(),
    }


KERNEL_WORDS = {
    "u8s8": "the exact u8 x s8 kernel",
    "u8u8": "the slower exact u8 x u8 kernel (no VNNI)",
}


def machine_line(info: dict[str, Any]) -> str:
    flags = ", ".join(info["flags"]) or "none of " + ", ".join(REPORTED_FLAGS)
    kernel = KERNEL_WORDS[info["int8_kernel"]]
    return f"machine: {info['cpu']}, {info['cores']} cores ({flags}); 8-bit int8 weights run {kernel}"
