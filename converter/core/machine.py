"""How many cores this machine has: the thread count runtimes document as their best CPU setting, and how
many conversions can overlap."""
from __future__ import annotations

import os
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
