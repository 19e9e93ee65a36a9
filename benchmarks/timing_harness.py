"""How far the verifier's timing is from the truth, and how much it moves from run to run.

    python benchmarks/timing_harness.py [--artifacts artifacts] [--model resnet18] [--artifact onnx_simplified]
                                        [--batch 1] [--repeats 3] [--verifier-runs 3] [--models resnet18]

1. The harness against a bare loop: the verifier's own cell job (a worker, the ONNX Runtime runner, the timing
   policy) against a plain `session.run` loop over the same ONNX file in this process, with the same threads
   and session options, and against ONNX Runtime's `onnxruntime_perf_test` and OpenVINO's `benchmark_app`
   where they are installed. Each is measured `--repeats` times, alternating, and the medians compared.
2. The verifier's run-to-run spread: `verify.run` with timing `--verifier-runs` times on the same artifacts;
   for each CPU cell and batch, every run's p50 and the spread (largest over smallest, minus one).

Prints the ratios; a benchmark, not a test: nothing here passes or fails.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converter.core.isolation import run_isolated  # noqa: E402
from converter.manifest import read_manifest  # noqa: E402
from verify.cells.environment import physical_cores  # noqa: E402
from verify.runners.base import LoadRequest  # noqa: E402
from verify.runners.onnxruntime_runner import OnnxRuntimeRunner  # noqa: E402
from verify.cells.session import CellJob, run_cell_job  # noqa: E402
from verify.cells.timing import DEFAULT_BATCHES, TimingPolicy, feeds_of  # noqa: E402


def harness_p50(path: Path, feeds: dict, threads: int, batch: int, policy: TimingPolicy) -> float:
    """The verifier's own measurement: its cell job in a worker."""
    request = LoadRequest(path, "cpu", threads, tuple(feeds), ("output",))
    job = CellJob(BareOutputs, request, feeds, True, policy, (batch,), None)
    outcome = run_isolated(run_cell_job, job)
    if not outcome.ok:
        raise SystemExit(f"harness failed: {outcome.message}")
    return outcome.value["timings"][0].p50_ms


class BareOutputs(OnnxRuntimeRunner):
    """The verifier's ONNX Runtime runner, taking the graph's own output names (whatever the zoo declared)."""

    def load(self, request: LoadRequest) -> None:
        import onnxruntime as ort

        session = ort.InferenceSession(str(request.path), providers=["CPUExecutionProvider"])
        names = tuple(o.name for o in session.get_outputs())
        inputs = tuple(i.name for i in session.get_inputs())
        super().load(LoadRequest(request.path, request.device, request.threads, inputs, names))


def bare_p50(path: Path, feeds: dict, threads: int, batch: int, seconds: float = 3.0) -> float:
    """A plain loop over one session with the runner's session options, in this process."""
    runner = BareOutputs()
    runner.load(LoadRequest(path, "cpu", threads, tuple(feeds), ("output",)))
    batch_feeds = feeds_of(feeds, batch)
    for _ in range(10):
        runner.session.run(None, batch_feeds)
    times, began = [], time.perf_counter()
    while time.perf_counter() - began < seconds or len(times) < 20:
        started = time.perf_counter()
        runner.session.run(None, batch_feeds)
        times.append(time.perf_counter() - started)
    del runner
    return float(np.median(times)) * 1000


def perf_test_p50(path: Path, threads: int) -> float | None:
    """onnxruntime_perf_test (batch as in the model; a dynamic batch runs as 1), when it is on PATH."""
    tool = shutil.which("onnxruntime_perf_test")
    if tool is None:
        return None
    result = subprocess.run([tool, "-e", "cpu", "-x", str(threads), "-t", "5", "-I", str(path)],
                            capture_output=True, text=True)
    for line in result.stdout.splitlines():
        if line.strip().startswith("P50 Latency"):
            return float(line.split(":")[1].split()[0]) * 1000
    return None


def benchmark_app_p50(path: Path, threads: int) -> float | None:
    """OpenVINO's benchmark_app at batch 1, f32 pinned (it runs bf16 on a bf16 CPU otherwise)."""
    tool = shutil.which("benchmark_app")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder)
        subprocess.run([tool, "-m", str(path), "-d", "CPU", "-hint", "latency", "-nthreads", str(threads),
                        "-infer_precision", "f32", "-shape", "[1,3,224,224]", "-t", "5",
                        "-report_type", "no_counters", "-report_folder", str(report)],
                       capture_output=True, text=True)
        for line in (report / "benchmark_report.csv").read_text().splitlines() if (
                report / "benchmark_report.csv").exists() else []:
            if line.lower().startswith("median"):
                return float(line.split(";")[1])
    return None


def harness_against_bare(args, threads: int, policy: TimingPolicy) -> None:
    manifest = read_manifest(args.artifacts)
    record = manifest.models[args.model].artifacts[args.artifact]
    path = args.artifacts / record.path
    shape = [args.batch, *manifest.models[args.model].config["input"]["shape"]]
    name = manifest.models[args.model].config["input"].get("name", "input")
    feeds = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    print(f"# harness against a bare loop: {args.model}/{args.artifact}, batch {args.batch}, {threads} threads")
    print(f"  {path}")
    harness, bare = [], []
    for repeat in range(args.repeats):  # alternating, so a slow minute of the machine touches both
        harness.append(harness_p50(path, feeds, threads, args.batch, policy))
        bare.append(bare_p50(path, feeds, threads, args.batch))
        print(f"  repeat {repeat + 1}: harness p50 {harness[-1]:.2f} ms, bare loop p50 {bare[-1]:.2f} ms", flush=True)
    h, b = float(np.median(harness)), float(np.median(bare))
    print(f"  median: harness {h:.2f} ms, bare loop {b:.2f} ms: harness / bare = {h / b:.3f}")
    for tool, measure in (("onnxruntime_perf_test", perf_test_p50), ("benchmark_app (OpenVINO, f32)",
                                                                     benchmark_app_p50)):
        value = measure(path, threads)
        print(f"  {tool}: " + (f"p50 {value:.2f} ms: harness / tool = {h / value:.3f}" if value else
                               "not installed (no ratio)"))


def verifier_spread(args, threads: int) -> None:
    from verify.api import VerifyOptions, run

    print(f"\n# the verifier's timing, {args.verifier_runs} runs: p50 per cell and batch, and the spread")
    runs = []
    for index in range(args.verifier_runs):
        started = time.perf_counter()
        options = VerifyOptions(artifacts=args.artifacts, models=tuple(args.models) if args.models else None,
                                devices=("cpu",), partial=True, threads=threads, cache=False)
        verified = run(options)
        runs.append({(c.model, c.runtime, c.artifact, t.batch): (t.p50_ms, t.stable)
                     for r in verified.results for c in r.cells for t in c.timings})
        print(f"  run {index + 1}: {time.perf_counter() - started:.0f} s ({verified.environment.get('machine_speed')})",
              flush=True)
    spreads, solid = [], []
    print(f"  {'cell':<52} {'batch':>5}  " + "  ".join(f"run{i + 1:>2} ms" for i in range(len(runs)))
          + "   spread   (~: the verifier marked the figure noisy or timed while the machine was slow)")
    for key in runs[0]:
        values = [r[key][0] for r in runs if key in r]
        marks = [r[key][1] for r in runs if key in r]
        spread = max(values) / min(values) - 1.0
        spreads.append(spread)
        if all(marks):
            solid.append(spread)
        cell = f"{key[0]}/{key[2]}/{key[1]}"
        print(f"  {cell:<52} {key[3]:>5}  " + "  ".join(f"{v:>7.2f}{' ' if ok else '~'}" for v, ok in zip(values, marks))
              + f"   {spread:6.1%}")
    if spreads:
        within = sum(s <= 0.05 for s in spreads)
        print(f"  cells within 5%: {within}/{len(spreads)}; median spread {np.median(spreads):.1%}, "
              f"largest {max(spreads):.1%}")
        if solid:
            print(f"  cells the verifier gave as solid in every run: {len(solid)}; within 5%: "
                  f"{sum(s <= 0.05 for s in solid)}; median spread {np.median(solid):.1%}, largest {max(solid):.1%}")
        if args.json:
            args.json.write_text(json.dumps({"spreads": spreads, "solid_spreads": solid,
                                             "runs": [{"|".join(map(str, k)): v for k, v in r.items()} for r in runs]},
                                            indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--model", default="resnet18", help="the model whose ONNX file is timed (default: resnet18)")
    parser.add_argument("--artifact", default="onnx_simplified", help="(default: onnx_simplified)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCHES[0])
    parser.add_argument("--repeats", type=int, default=3, help="harness/bare pairs (default: 3)")
    parser.add_argument("--verifier-runs", type=int, default=3, help="0: skip part 2 (default: 3)")
    parser.add_argument("--models", nargs="*", help="part 2: models to verify (default: every one)")
    parser.add_argument("--threads", type=int, default=0, help="default: the physical cores")
    parser.add_argument("--json", type=Path, help="part 2: write the p50s and spreads here")
    args = parser.parse_args()
    threads = args.threads or physical_cores()
    harness_against_bare(args, threads, TimingPolicy())
    if args.verifier_runs:
        verifier_spread(args, threads)


if __name__ == "__main__":
    main()
