"""What this machine is: how many cores it has (the thread count runtimes document as their best CPU setting,
and how many conversions can overlap), which instructions it has for reduced precisions, and whether it shows an
NVIDIA GPU at all."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path


def physical_cores() -> int:
    """Physical cores (not hyper-threads), from /proc/cpuinfo; the logical CPUs where it cannot be read."""
    try:
        pairs, physical = set(), None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "physical id":
                physical = value
            elif key == "core id":
                pairs.add((physical, value))
        if pairs:
            return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1


# The instructions that decide whether a reduced precision runs natively: bf16 dot products (AVX-512 BF16, AMX
# tiles, Arm's BF16), int8 dot products (VNNI, AMX, Arm's dot product), fp16 arithmetic (AVX-512 FP16, AMX-FP16,
# Arm's half precision), and AVX-512 itself (oneDNN's and OpenVINO's bf16 paths need it).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
FP16_FLAGS = ("avx512_fp16", "amx_fp16", "asimdhp")


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's model name and instruction-set flags, as the kernel lists them in /proc/cpuinfo (x86 `flags`,
    Arm `Features`). Decisions about what a cell can run read these, never the machine they were written on."""

    model: str = "unknown"
    flags: frozenset[str] = frozenset()
    known: bool = True  # False: the flags could not be read (not Linux): nothing is refused for want of one

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    def present(self, flags: tuple[str, ...]) -> list[str]:
        """Which of `flags` this CPU has, in their order."""
        return [flag for flag in flags if flag in self.flags]

    @property
    def bf16(self) -> bool:
        """Native bf16 arithmetic: x86 AVX-512 BF16 or AMX, Arm's BF16 extension."""
        return bool(self.present(BF16_FLAGS))

    @property
    def vnni(self) -> bool:
        return bool(self.present(VNNI_FLAGS))

    @property
    def amx(self) -> bool:
        return "amx_tile" in self.flags

    def bf16_instructions(self) -> str:
        """One phrase for reports: which bf16 instructions this CPU has, or that it has none."""
        if not self.known:
            return "bf16 instructions unknown (the CPU's flags could not be read)"
        found = self.present(BF16_FLAGS)
        return f"bf16 instructions: {', '.join(found)}" if found else "no bf16 instructions (bf16 is emulated)"

    def summary(self) -> dict[str, str]:
        """What a report's provenance says of the CPU's reduced-precision support."""
        if not self.known:
            return {"cpu_flags": "unknown"}
        return {"cpu_avx512": "yes" if self.avx512 else "no", "cpu_bf16": "yes" if self.bf16 else "no (emulated)",
                "cpu_int8_dot_product": "yes (VNNI)" if self.vnni else "no"}


def parse_cpuinfo(text: str) -> CpuFeatures:
    """The first processor's model name and flags from /proc/cpuinfo's text."""
    model, flags = "unknown", None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model name") and model == "unknown":
            model = value.strip()
        elif key in ("flags", "Features") and flags is None:
            flags = frozenset(value.split())
    return CpuFeatures(model, flags or frozenset(), known=flags is not None)


# A file read in place of /proc/cpuinfo: how the tests describe a CPU that lacks instructions this one has. A
# description that adds instructions does not make them real: each bf16 runtime asks its own capability query
# when the cell loads, and skips the cell when the real CPU lacks them.
CPUINFO_ENV = "PARITY_CPUINFO"


def cpu_features(cpuinfo: Path | None = None) -> CpuFeatures:
    """This machine's CPU ($PARITY_CPUINFO's description where set); unknown flags where it cannot be read."""
    path = cpuinfo or Path(os.environ.get(CPUINFO_ENV) or "/proc/cpuinfo")
    try:
        return parse_cpuinfo(path.read_text())
    except OSError:
        return CpuFeatures(known=False)


# The driver's device nodes (/dev/dxg: a GPU under WSL2; nvhost/nvmap: a Jetson's integrated GPU), and the driver's
# own list of GPUs, present once its module is loaded even before the nodes are made on first use.
NVIDIA_DEVICE_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/nvhost-ctrl-gpu", "/dev/nvmap")
NVIDIA_DRIVER_GPUS = "/proc/driver/nvidia/gpus"


def nvidia_gpu_visible(system: str = sys.platform, nodes: tuple[str, ...] = NVIDIA_DEVICE_NODES,
                       driver_gpus: str = NVIDIA_DRIVER_GPUS) -> bool | None:
    """Whether this Linux machine shows an NVIDIA GPU to its processes: CUDA needs its driver, which makes one of
    these device nodes or lists the GPU under /proc. None where that cannot be told this way (another OS): then the
    frameworks are asked."""
    if not system.startswith("linux"):
        return None
    listed = Path(driver_gpus)
    return any(Path(node).exists() for node in nodes) or (listed.is_dir() and any(listed.iterdir()))
