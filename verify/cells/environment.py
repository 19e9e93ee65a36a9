"""The machine and tool versions a report was produced on."""
from __future__ import annotations

import os
import platform
import secrets
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from converter.core.files import file_sha256
from converter.core.machine import cpu_features, nvidia_gpu_visible, physical_cores
from converter.manifest import tool_versions

from ..plan.inputs import ImageSet

REPO = Path(__file__).resolve().parents[2]


def describe_machine(threads: int) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, **cpu_features().summary(), "logical_cpus": os.cpu_count(), "physical_cores": physical_cores(),
            "threads": threads,
            "platform": platform.platform(), **{f"version.{k}": v for k, v in tool_versions().items()}}
    try:
        if nvidia_gpu_visible() is False:  # nothing to name: torch is not imported to say so (1.5 s)
            raise LookupError
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    info.setdefault("gpu", "none")
    return info


def new_run_id() -> str:
    """When it started (UTC) and 6 random hex digits: sorts by time, and two runs in one second still differ."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def describe_run(command: str | None, manifest: Path, zoo: Path, images: ImageSet, left_out: str | None,
                 run_id: str = "") -> dict:
    """What a report is about: which run, when, which tool, which command, which zoo and manifest, which images."""
    try:
        version = metadata.version("parity-workbench")
    except metadata.PackageNotFoundError:
        version = "not installed"
    return {
        "run_id": run_id or new_run_id(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tool": f"parity-workbench {version}",
        "commit": _git_commit(),
        "command": command or "library call (verify.run)",
        "manifest": str(manifest),
        "zoo": f"{zoo} (sha256 {file_sha256(zoo)[:12]})" if zoo.is_file() else "the manifest's copy of each entry",
        "images": images.source,
        "left_out": left_out or "nothing",
    }


def _git_commit() -> str:
    """The workbench's own commit, with '+changes' when its files differ from it; 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
