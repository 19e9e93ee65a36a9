"""Which cells a CPU can run, decided from its flags: the probe on faked CPU descriptions (no model runs here)."""
from __future__ import annotations

import pytest

from converter.core.machine import CPUINFO_ENV, CpuFeatures, cpu_features, parse_cpuinfo
from verify.judge.compare import PASS, SKIP
from verify.results import Cell
from verify.runners import Availability, registered_runners
from verify.cells.session import emulated_precision

AVX2 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx fma avx2"
AVX512 = AVX2 + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"
# The four kinds of x86 CPU the project has met or must expect: the Intel Xeon of issue 25 has AVX-512 and VNNI
# but no bf16; the AMD EPYC it was written on adds avx512_bf16; a Sapphire Rapids adds AMX.
CPUS = {
    "no-avx512": f"model name\t: Intel(R) Core(TM) i7-8700\nflags\t\t: {AVX2}\n",
    "avx512-no-bf16": f"model name\t: Intel(R) Xeon(R) Platinum 8272CL\nflags\t\t: {AVX512}\n",
    "avx512-bf16": f"model name\t: AMD EPYC 9R14\nflags\t\t: {AVX512} avx512_bf16\n",
    "amx": f"model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: {AVX512} avx512_bf16 amx_bf16 amx_tile amx_int8\n",
}
RUNNERS = registered_runners()


def skip_reasons(kind: str) -> dict[str, str | None]:
    availability = Availability(cpu=parse_cpuinfo(CPUS[kind]))
    return {name: RUNNERS[name].unavailable("cpu", availability)
            for name in ("torch-bf16", "openvino-bf16", "paddle-inference-bf16", "torch", "openvino")}


@pytest.mark.parametrize("kind,avx512,bf16,vnni,amx", [
    ("no-avx512", False, False, False, False), ("avx512-no-bf16", True, False, True, False),
    ("avx512-bf16", True, True, True, False), ("amx", True, True, True, True)])
def test_the_flags_are_read_from_cpuinfo(kind, avx512, bf16, vnni, amx):
    cpu = parse_cpuinfo(CPUS[kind])
    assert cpu.known and (cpu.avx512, cpu.bf16, cpu.vnni, cpu.amx) == (avx512, bf16, vnni, amx)
    assert cpu.model.startswith(("Intel", "AMD"))
    assert ("no bf16 instructions" in cpu.bf16_instructions()) is not bf16


def test_an_arm_cpu_reads_its_features_line():
    cpu = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd asimddp bf16 i8mm\n")
    assert cpu.known and cpu.bf16 and cpu.vnni and not cpu.avx512


def test_unreadable_flags_refuse_nothing(tmp_path):
    cpu = cpu_features(tmp_path / "missing")
    assert not cpu.known and cpu.summary() == {"cpu_flags": "unknown"}
    assert all(reason is None for reason in (RUNNERS[name].unavailable("cpu", Availability(cpu=cpu))
                                             for name in ("openvino-bf16", "paddle-inference-bf16")))


def test_paddle_bf16_runs_only_with_bf16_instructions():
    """Paddle's oneDNN bf16 kernels crash on the AVX-512 Xeon without bf16 (std::exception) and are turned off
    without a word on a CPU without AVX-512: both are SKIPs with the reason, decided before the cell runs."""
    for kind in ("no-avx512", "avx512-no-bf16"):
        reason = skip_reasons(kind)["paddle-inference-bf16"]
        assert reason and "need bf16 instructions (avx512_bf16 or amx_bf16)" in reason and "Intel" in reason
    assert skip_reasons("avx512-bf16")["paddle-inference-bf16"] is None
    assert skip_reasons("amx")["paddle-inference-bf16"] is None


def test_openvino_bf16_needs_avx512_and_torch_bf16_runs_everywhere():
    assert "has neither" in skip_reasons("no-avx512")["openvino-bf16"]
    for kind in ("avx512-no-bf16", "avx512-bf16", "amx"):
        assert skip_reasons(kind)["openvino-bf16"] is None  # emulated without bf16, native with it
    for kind in CPUS:
        reasons = skip_reasons(kind)
        assert reasons["torch-bf16"] is None and reasons["torch"] is None and reasons["openvino"] is None


@pytest.mark.parametrize("kind", list(CPUS))
def test_a_bf16_cell_is_marked_emulated_where_the_cpu_has_no_bf16(kind):
    availability = Availability(cpu=parse_cpuinfo(CPUS[kind]))
    cell = Cell("m", "eager", "torch-bf16", "cpu", PASS, "", precision="bf16")
    note = emulated_precision(cell, availability)
    assert bool(note) is not availability.cpu.bf16
    if note:
        assert "has no bf16 instructions" in note and availability.cpu.model in note
    assert emulated_precision(Cell("m", "eager", "torch", "cpu", PASS, ""), availability) == ""  # fp32
    assert emulated_precision(Cell("m", "eager", "torch-bf16", "cpu", SKIP, "", precision="bf16"), availability) == ""


def test_the_environment_variable_describes_another_cpu(tmp_path, monkeypatch):
    described = tmp_path / "cpuinfo"
    described.write_text(CPUS["avx512-no-bf16"])
    monkeypatch.setenv(CPUINFO_ENV, str(described))
    assert cpu_features() == parse_cpuinfo(CPUS["avx512-no-bf16"])
    assert Availability().cpu.bf16 is False  # what every decision of a run reads

