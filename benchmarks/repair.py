"""What `python -m verify --repair` finds on a converted zoo, and what it costs: per repair, the cell, the verdict, how
many nodes stayed in float32 (or which route won), the search's seconds and ONNX Runtime's latency of the fp32, the
reduced-precision and the mixed model.

    python benchmarks/repair.py [--artifacts artifacts] [--zoo zoo.yaml] [--seconds 300] [--write docs/measurements.md]

Runs the verifier once with `--no-timing --repair` into a scratch report folder (the artifacts must be converted:
`python -m converter zoo.yaml`), prints the section and, with --write, replaces its part of the document. A benchmark,
not a test: on the default zoo it takes minutes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.main_job import describe_machine, machine_line, publish  # noqa: E402

MARKERS = ("<!-- benchmarks/repair.py: begin -->", "<!-- benchmarks/repair.py: end -->")


def render(repairs: list[dict], seconds: float, exit_code: int, command: str) -> str:
    lines = ["## What --repair finds on the default zoo, measured", "",
             "Written by `python benchmarks/repair.py --write docs/measurements.md`; do not edit it by hand.",
             machine_line(describe_machine()), "",
             f"`{command}` took {seconds:.0f} s in all (the run, the searches and their proofs), exit code "
             f"{exit_code}.", "",
             "| model | artifact | runtimes | result | float32 nodes or route | search and proof s | latency ms (ONNX "
             "Runtime, a batch of 8) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for repair in repairs:
        route = next((a["label"] for a in repair["attempts"] if a["label"] and a["passed"]), "")
        kept = route or (f"{repair['kept']} of {repair['candidates']}" if repair["candidates"] else "")
        latency = ", ".join(f"{name} {value:.1f}" for name, value in repair["latency_ms"].items())
        lines.append(f"| {repair['model']} | {repair['artifact']} | {repair['runtime']} | {repair['status']} | {kept} "
                     f"| {repair['seconds']:.0f} | {latency} |")
    lines += ["", "Each repair's line, as the report gives it:", ""]
    lines += [f"- {r['model']} {r['artifact']}: {r['summary']}" for r in repairs]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--zoo", help="default: the one the manifest names")
    parser.add_argument("--seconds", type=float, default=300.0, help="--repair-seconds")
    parser.add_argument("--write", type=Path, help="the document whose section to replace (docs/measurements.md)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="repair-benchmark-") as scratch:
        command = [sys.executable, "-m", "verify", "--artifacts", args.artifacts, "--report", scratch, "--no-timing",
                   "--repair", "--repair-seconds", str(args.seconds), *(["--zoo", args.zoo] if args.zoo else [])]
        started = time.monotonic()
        ran = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.monotonic() - started
        repairs_file = Path(scratch) / "repairs.json"
        if not repairs_file.exists():
            print(ran.stdout[-2000:], ran.stderr[-2000:], sep="\n", file=sys.stderr)
            return 1
        repairs = json.loads(repairs_file.read_text())
    shown = "python -m verify --report REPORT --no-timing --repair" + \
        (f" --repair-seconds {args.seconds:g}" if args.seconds != 300 else "")
    section = render(repairs, seconds, ran.returncode, shown)
    publish(section, args.write, MARKERS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
