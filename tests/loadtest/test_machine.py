"""The machine record every benchmark result carries (loadtest/machine.py)."""

from pathlib import Path

from loadtest.machine import KERNEL_WORDS, describe_machine, machine_line, parse_cpuinfo

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16

processor\t: 1
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16
"""


def test_cpuinfo_gives_the_first_processors_model_and_flags() -> None:
    model, flags = parse_cpuinfo(CPUINFO)
    assert model == "AMD EPYC 9R14 96-Core Processor"
    assert flags == {"fpu", "sse2", "avx2", "avx512f", "avx512_vnni", "avx512_bf16"}


def test_the_int8_kernel_is_the_engines_own_probe() -> None:
    from model_store.int8_products import default_products_exact

    info = describe_machine()
    assert info["int8_kernel"] == ("u8s8" if default_products_exact() else "u8u8")
    assert info["int8_kernel"] in KERNEL_WORDS


def test_describe_machine_reads_the_given_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    info = describe_machine(cpuinfo)
    assert info["cpu"] == "AMD EPYC 9R14 96-Core Processor"
    assert info["flags"] == ["avx2", "avx512_vnni", "avx512f"]  # only the ones that matter here, sorted
    assert info["cores"] and info["cores"] >= 1
    line = machine_line({**info, "int8_kernel": "u8u8"})
    assert line.startswith("machine: AMD EPYC 9R14 96-Core Processor, ")
    assert "(avx2, avx512_vnni, avx512f)" in line and "exact u8 x u8 kernel (no VNNI)" in line


def test_an_unreadable_cpuinfo_still_describes_the_machine(tmp_path: Path) -> None:
    info = describe_machine(tmp_path / "missing")
    assert info["flags"] == [] and info["cpu"]
    assert "none of avx2" in machine_line(info)
