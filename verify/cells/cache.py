"""Cell results kept between verifier runs, keyed by everything that decides them: an unchanged re-run reuses
them instead of loading and timing every artifact again.

The key covers the runner class, the artifact's files (their sha256, as the manifest records them and the
integrity check has just confirmed), the device, threads, declared inputs and outputs, the input arrays, the
timing policy and batches, this workbench's own source code, the tool versions and the machine. Anything else
changes nothing a cell computes. Comparisons are never cached: they are redone from the cached outputs, so a
changed tolerance takes effect at once. Arrays are stored as .npz (no pickle: a cache file cannot run code),
the rest as JSON written last, so an entry without its JSON is not an entry.
"""
from __future__ import annotations

import calendar
import functools
import hashlib
import io
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from converter.core.files import atomic_write

from ..judge.invariance import PROBE_BATCHES
from .timing import Timing

CACHE_FOLDER = Path(".cache") / "verify"  # inside the artifacts folder
KEEP_DAYS = 14  # entries not used for this long are removed
FORMAT = "1"
STORED_FORMAT = "%Y-%m-%d %H:%M:%S UTC"  # an entry's "stored" time


class CellCache:
    """Stores and finds cell results under `folder`; `folder` None: a cache that never finds anything."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.hits = 0

    def key(self, kind: str, parts: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps({"kind": kind, "format": FORMAT, "parts": parts, "code": code_fingerprint(),
                                  "machine": machine_fingerprint()}, sort_keys=True, default=str).encode())
        for name in sorted(arrays):
            array = np.ascontiguousarray(arrays[name])
            digest.update(f"{name}{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()[:32]

    def load(self, key: str, max_age_s: float | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """(the JSON part, the arrays) of an entry, or None when there is none, it cannot be read, or it was stored
        more than `max_age_s` seconds ago."""
        if self.folder is None:
            return None
        meta, data = self.folder / f"{key}.json", self.folder / f"{key}.npz"
        try:
            facts = json.loads(meta.read_text())
            if max_age_s is not None and time.time() - calendar.timegm(
                    time.strptime(facts["stored"], STORED_FORMAT)) > max_age_s:
                return None
            with np.load(data, allow_pickle=False) as arrays:
                loaded = {name: arrays[name] for name in arrays.files}
            os.utime(meta)
        except (OSError, ValueError, KeyError):
            return None
        self.hits += 1
        return facts, loaded

    def store(self, key: str, facts: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if self.folder is None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write(self.folder / f"{key}.npz", buffer.getvalue())
        atomic_write(self.folder / f"{key}.json", json.dumps({**facts, "stored": _now()}, default=str))

    def prune(self, keep_days: float = KEEP_DAYS) -> None:
        if self.folder is None or not self.folder.is_dir():
            return
        oldest = time.time() - keep_days * 86400
        for meta in self.folder.glob("*.json"):
            if meta.stat().st_mtime < oldest:
                meta.unlink(missing_ok=True)
                meta.with_suffix(".npz").unlink(missing_ok=True)
        # the charts verify.report.charts drew and the inputs files verify.plan.inputs wrote, kept here for a re-run
        for kept in (*self.folder.glob("charts/*.png"), *self.folder.glob("inputs/*.npz")):
            if kept.stat().st_mtime < oldest:
                kept.unlink(missing_ok=True)


def cell_facts(value: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A cell worker's result as (JSON part, arrays), for store()."""
    arrays = {f"output/{name}": array for name, array in value["output"].items()}
    arrays.update({f"again/{name}": array for name, array in value["again"].items()})
    arrays.update({f"probe{size}/{name}": array for size, outputs in value.get("probes", {}).items()
                   for name, array in outputs.items()})
    sweep = value.get("sweep", {})  # per size of the shape sweep: its outputs, or why the runtime failed there
    arrays.update({f"size/{label}/{name}": array for label, outputs in sweep.items() if not isinstance(outputs, str)
                   for name, array in outputs.items()})
    noise = value.get("noise", {})  # the reference's: its first samples computed otherwise, or why not
    arrays.update({f"noise/{variant}/{name}": array for variant, outputs in noise.items()
                   if not isinstance(outputs, str) for name, array in outputs.items()})
    return {"config": value["config"], "timings": [asdict(t) for t in value["timings"]],
            "sweep": {label: outputs if isinstance(outputs, str) else sorted(outputs)
                      for label, outputs in sweep.items()},
            "noise": {variant: outputs if isinstance(outputs, str) else sorted(outputs)
                      for variant, outputs in noise.items()}}, arrays


def cell_value(facts: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The inverse of cell_facts: what the worker returned (with no canary readings: they are not today's)."""
    def part(prefix: str) -> dict[str, np.ndarray]:
        return {name.split("/", 1)[1]: array for name, array in arrays.items() if name.startswith(prefix + "/")}

    probes = {size: found for size in PROBE_BATCHES if (found := part(f"probe{size}"))}
    sweep = {label: names if isinstance(names, str) else {name: arrays[f"size/{label}/{name}"] for name in names}
             for label, names in facts.get("sweep", {}).items()}
    noise = {variant: names if isinstance(names, str) else {name: arrays[f"noise/{variant}/{name}"] for name in names}
             for variant, names in facts.get("noise", {}).items()}
    return {"output": part("output"), "again": part("again"), "probes": probes, "sweep": sweep, "noise": noise,
            "config": facts["config"],
            "timings": [Timing(**t) for t in facts["timings"]], "canaries": [], "cached": facts.get("stored")}


ROOT = Path(__file__).resolve().parents[2]  # the folder holding verify/ and converter/


def code_files() -> list[Path]:
    """The workbench's own Python sources (verify/ and converter/), in a fixed order."""
    files = sorted([*ROOT.joinpath("verify").rglob("*.py"), *ROOT.joinpath("converter").rglob("*.py")])
    if not files:  # a fingerprint of nothing would never change: every cached cell would outlive every edit
        raise RuntimeError(f"no workbench sources under {ROOT}")
    return files


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """The workbench's own Python sources: a change to any of them (a runner, the timing) invalidates the cache."""
    digest = hashlib.sha256()
    for path in code_files():
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def machine_fingerprint() -> dict[str, Any]:
    """The machine and the tool versions (describe_machine has both), without the run's thread setting."""
    from .environment import describe_machine

    return {key: value for key, value in describe_machine(0).items() if key != "threads"}


def _now() -> str:
    return time.strftime(STORED_FORMAT, time.gmtime())
