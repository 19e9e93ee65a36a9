"""A large labelled folder through the verifier: wall time and the memory of the verifier and of its largest worker.

    python benchmarks/streaming.py [--count 5000] [--artifacts artifacts] [--model bees-vs-ants]
                                   [--runtimes onnxruntime] [--folder DIR] [--memory-limit-mb 8192]

Writes `--count` generated ants/bees photos (the demo's classes, in its ImageFolder layout) into `--folder` (a
temporary one unless given; kept and reused when given), then runs `python -m verify` on them without timing,
sampling every process's resident memory from /proc twice a second. The model's own `images:` in the zoo would
win over `--images`, so the run reads a copy of the zoo (beside it, removed after) whose `images:` is the folder.
Needs the demo built first (`python -m converter.demo` and `python -m converter zoo.yaml`). Prints the figures;
a benchmark, not a test.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converter.demo import CLASSES, insect_image  # noqa: E402


def write_folder(folder: Path, count: int, seed: int = 5000) -> None:
    """`count` images, alternating classes, written one at a time (never all in memory)."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        label = index % 2
        target = folder / CLASSES[label] / f"{CLASSES[label]}_{index // 2:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            insect_image(label, rng).save(target, quality=90)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += children.get(pid, [])
    return found


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--model", default="bees-vs-ants")
    parser.add_argument("--runtimes", default="onnxruntime")
    parser.add_argument("--folder", help="where the images go (kept; reused when they are already there)")
    parser.add_argument("--memory-limit-mb", type=int, default=8192)
    parser.add_argument("--zoo", default="zoo.yaml")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="streaming-")
    folder = Path(args.folder) if args.folder else Path(scratch.name) / "images"
    started = time.perf_counter()
    write_folder(folder, args.count)
    print(f"{args.count} images in {folder}: {time.perf_counter() - started:.0f} s to write", flush=True)
    report = Path(scratch.name) / "report"
    zoo = Path(args.zoo)
    raw = yaml.safe_load(zoo.read_text())
    for entry in raw["models"]:
        if entry["name"] == args.model:
            entry["images"] = str(folder.resolve())
    copy = zoo.with_name(f".streaming-{os.getpid()}.yaml")
    copy.write_text(yaml.safe_dump(raw, sort_keys=False))
    command = [sys.executable, "-m", "verify", "--artifacts", args.artifacts, "--models", args.model, "--runtimes",
               args.runtimes, "--zoo", str(copy), "--no-timing", "--no-cache", "--partial",
               "--memory-limit-mb", str(args.memory_limit_mb), "--report", str(report)]
    started = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    peaks = {"verifier": 0.0, "worker": 0.0}

    def sample() -> None:
        while process.poll() is None:
            for pid in descendants(process.pid):
                role = "verifier" if pid == process.pid else "worker"
                peaks[role] = max(peaks[role], rss_mb(pid))
            time.sleep(0.5)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    sampler.join()
    copy.unlink()
    wall = time.perf_counter() - started
    print(f"\npython -m verify on {args.count} images ({args.model}, {args.runtimes}, no timing): exit {code}, "
          f"{wall:.0f} s; peak resident memory: verifier {peaks['verifier']:.0f} MB, largest other process "
          f"(a worker or the fork server) {peaks['worker']:.0f} MB; worker limit {args.memory_limit_mb} MB")
    accuracy = report / "accuracy.csv"
    if accuracy.exists():
        with accuracy.open() as file:
            for row in csv.DictReader(file):
                if row.get("class", "") in ("", "all"):
                    print("  " + ", ".join(f"{k}={v}" for k, v in row.items() if v))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
