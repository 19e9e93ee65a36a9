"""The machine and tool versions a report was produced on."""
from __future__ import annotations

import os
import platform
from pathlib import Path

from converter.manifest import tool_versions


def physical_cores() -> int:
    """Physical cores (not hyper-threads): the thread count runtimes document as their best CPU setting."""
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


def describe_machine(threads: int) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "physical_cores": physical_cores(), "threads": threads,
            "platform": platform.platform(), **{f"version.{k}": v for k, v in tool_versions().items()}}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    info.setdefault("gpu", "none")
    return info
