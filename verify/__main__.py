"""python -m verify --report DIR [--artifacts artifacts] [--images DIR] [--models a,b] [...]
   python -m verify --selftest [--report reports/selftest] [--seeds 0,1,2]

Exit codes: 0 every required cell PASS; 1 a cell FAILed or ERRORed, a deployment preprocessing check failed,
a required runtime was skipped, or a conversion failed (unless waived by allow_failures in the zoo); with
--selftest, a fault went undetected or the clean model was blocked; 2 usage error (no manifest, bad path, bad zoo).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from converter.cli_common import UsageError, add_limit_arguments, split_list, start

from .gate import EXIT_BLOCKED, EXIT_PASS, EXIT_USAGE, decide


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        limits = start(args, ("verify", "converter"), "%(levelname)s: %(message)s")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from converter.errors import WorkbenchError
    from converter.manifest import read_manifest
    from converter.zoo import DEVICES, RUNTIMES

    from .entries import resolve_entries
    from .environment import describe_machine, physical_cores
    from .inputs import load_images, synthetic_images
    from .report import markdown, parity_frame, preprocessing_frame, summary, timing_frame
    from .runners import Availability
    from .session import VerifyOptions, verify_model

    if args.selftest:
        return _selftest(args)
    if not args.report:
        return _usage("--report is required (a folder for the reports)")
    devices, runtimes, models = split_list(args.devices), split_list(args.runtimes), split_list(args.models)
    for flag, values, known in (("--devices", devices, DEVICES), ("--runtimes", runtimes, RUNTIMES)):
        unknown = [v for v in values or [] if v not in known]
        if unknown:
            return _usage(f"{flag}: unknown {unknown} (choose from {', '.join(known)})")
    if min(args.runs, args.batch, args.num_images) < 1 or args.warmup < 0:
        return _usage("--runs, --batch and --num-images must be at least 1, --warmup at least 0")
    artifacts = Path(args.artifacts)
    try:
        manifest = read_manifest(artifacts)
        unknown = [m for m in models or [] if m not in manifest.models]
        if unknown:
            return _usage(f"--models: {unknown} not in {artifacts / 'manifest.json'} (has: {sorted(manifest.models)})")
        entries = resolve_entries(manifest, Path(args.zoo) if args.zoo else None, str(artifacts / "manifest.json"))
        images = load_images(Path(args.images)) if args.images else synthetic_images(args.num_images)
    except WorkbenchError as exc:
        return _usage(str(exc))
    if len({image.tobytes() for image in images.images}) < 2:
        # one input cannot show that an output depends on the input, nor catch most reorderings
        return _usage(f"{args.images or '--num-images'}: at least 2 distinct images are needed")

    threads = args.threads or physical_cores()
    report_dir = Path(args.report)
    options = VerifyOptions(artifacts=artifacts, report=report_dir, devices=tuple(devices or DEVICES),
                            runtimes=tuple(runtimes) if runtimes else None, threads=threads,
                            timing=not args.no_timing, warmup=args.warmup, runs=args.runs,
                            throughput_batch=args.batch,
                            limits=limits)
    availability = Availability.probe()
    results = []
    try:
        for name in models or list(manifest.models):
            resolved = entries[name]
            print(f"{name}: {len(images.images)} images", file=sys.stderr, flush=True)
            result = verify_model(name, manifest.models[name], resolved.entry, images, options, availability,
                                  stale=resolved.stale)
            for cell in result.cells:
                print(f"  {cell.runtime:<17} {cell.artifact:<16} {cell.device:<9} {cell.status:<6} {cell.detail}",
                      file=sys.stderr, flush=True)
                if cell.divergence:
                    print(f"  {'':<44}{cell.divergence.summary}", file=sys.stderr, flush=True)
            for check in result.preprocessing:
                print(f"  {'preprocessing':<17} {check.deployment:<16} {check.library:<9} {check.status:<6} "
                      f"{check.detail}", file=sys.stderr, flush=True)
            results.append(result)
    except KeyboardInterrupt:
        print("interrupted: no report written", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --verbose)", file=sys.stderr)
        return EXIT_BLOCKED

    by_name = {name: resolved.entry for name, resolved in entries.items()}
    verdict = decide(results, by_name)
    environment = describe_machine(threads)
    _write(report_dir / "report.md", markdown(results, verdict, environment))
    _write(report_dir / "parity.csv", parity_frame(results, by_name).to_csv(index=False))
    _write(report_dir / "timing.csv", timing_frame(results).to_csv(index=False))
    _write(report_dir / "preprocessing.csv", preprocessing_frame(results).to_csv(index=False))
    _write(report_dir / "summary.json", json.dumps(summary(results, verdict, environment), indent=2, default=str))
    print(f"\n{verdict.label}: {len(verdict.blocking)} blocking, {len(verdict.waived)} waived "
          f"-> {report_dir / 'report.md'}")
    for line in verdict.blocking:
        print(f"  blocking: {line}")
    return verdict.exit_code


def _parse(argv):
    parser = argparse.ArgumentParser(prog="python -m verify", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", help="folder for report.md, parity.csv, preprocessing.csv, timing.csv, "
                                         "summary.json (with --selftest: selftest.md, selftest.csv)")
    parser.add_argument("--artifacts", default="artifacts", help="the converter's output folder (default: artifacts)")
    parser.add_argument("--zoo", help="zoo file for tolerances and waivers (default: the one the manifest names)")
    parser.add_argument("--images", help="folder of jpg/png images (default: seeded synthetic images)")
    parser.add_argument("--num-images", type=int, default=8,
                        help="synthetic images to generate, at least 2 (default: 8)")
    parser.add_argument("--models", help="comma-separated model names (default: all in the manifest)")
    parser.add_argument("--runtimes", help="comma-separated runtimes (default: all); the reference always runs")
    parser.add_argument("--devices", help="comma-separated among cpu,cuda,tensorrt (default: all; unavailable ones SKIP)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per runtime (default: physical cores)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before timing (default: 2)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per batch size (default: 10)")
    parser.add_argument("--batch", type=int, default=8, help="batch size for throughput (default: 8)")
    parser.add_argument("--no-timing", action="store_true", help="parity only")
    add_limit_arguments(parser, "CPU cell")
    parser.add_argument("--selftest", action="store_true",
                        help="prove the gate: inject known faults into a small converted model and check each is "
                             "blocked (report default: reports/selftest)")
    parser.add_argument("--seeds", default="0,1,2", help="--selftest: model and image seeds (default: 0,1,2)")
    parser.add_argument("--verbose", action="store_true", help="debug logs and tracebacks")
    return parser.parse_args(argv)


def _selftest(args) -> int:
    from .environment import physical_cores
    from .selftest.run import SelftestError, run_selftest
    from .selftest.table import selftest_frame, selftest_markdown

    try:
        seeds = [int(s) for s in split_list(args.seeds) or []]
    except ValueError:
        return _usage(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if not seeds or min(seeds) < 0:
        return _usage("--seeds: give at least one seed >= 0")
    report = Path(args.report or "reports/selftest")
    try:
        rows = run_selftest(report, seeds, num_images=args.num_images, threads=args.threads or physical_cores())
    except SelftestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BLOCKED
    except KeyboardInterrupt:
        print("interrupted: no self-test report written", file=sys.stderr)
        return 130
    text = selftest_markdown(rows)
    _write(report / "selftest.md", text)
    _write(report / "selftest.csv", selftest_frame(rows).to_csv(index=False))
    print(text)
    print(f"-> {report / 'selftest.md'} (each run's own report under {report / 'runs'})")
    return EXIT_PASS if all(r.detected for r in rows) else EXIT_BLOCKED


def _usage(message: str) -> int:
    if sys.exc_info()[0] is not None and logging.getLogger("verify").isEnabledFor(logging.DEBUG):
        traceback.print_exc()  # --verbose: the traceback behind a user error
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _write(path: Path, text: str) -> None:
    """Write next to the target, then rename: a report is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
