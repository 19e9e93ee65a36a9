"""The machine's full speed remembered from one verify run to the next (ARTIFACTS/.cache/machine-speed.json).

Within a run, full speed is what the canary reads most of the time at best (MachineSpeed). A run that spends
all of its minutes beside a neighbour on this shared VM would learn that slow state as "full" and time every
cell in it unmarked: measured here, a run whose canary read 186 GFLOP/s throughout gave ShuffleNet in ONNX
Runtime 2.3 ms against 1.1 ms in the runs before and after, marked as solid. A full speed that an earlier run
reached on the same machine and tools, and that a run confirmed within REMEMBER_HOURS, is kept as the bar.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from converter.core.files import atomic_write

SPEED_FILE = Path(".cache") / "machine-speed.json"  # inside the artifacts folder
REMEMBER_HOURS = 24.0
CONFIRMED_WITHIN = 0.08  # a run whose own full speed comes this close to the remembered one confirms it


def remembered_speed(path: Path, machine: dict, now: float | None = None) -> float | None:
    """The full canary GFLOP/s remembered for this machine, or None (none, another machine, expired, unreadable)."""
    try:
        data = json.loads(path.read_text())
        expired = (now or time.time()) - float(data["confirmed"]) > REMEMBER_HOURS * 3600
        if expired or data["machine"] != json.loads(json.dumps(machine, default=str)):
            return None
        return float(data["full_gflops"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember_speed(path: Path, machine: dict, seen: float | None, known: float | None,
                   now: float | None = None) -> None:
    """Keep this run's full speed when it reached (or beat) the remembered one; a run that stayed slow changes
    nothing, so the bar expires REMEMBER_HOURS after the last run that confirmed it."""
    if seen is None or (known is not None and seen < known * (1.0 - CONFIRMED_WITHIN)):
        return
    full = max(seen, known or 0.0)
    try:
        atomic_write(path, json.dumps({"machine": machine, "full_gflops": round(full, 1),
                                       "confirmed": now or time.time()}, indent=1, default=str))
    except OSError:  # a read-only artifacts folder: the next run learns the machine again
        pass
