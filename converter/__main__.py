"""Convert every model of a zoo file into each requested format, with a manifest of what was built and why
anything failed.

Exit codes: 0 every requested artifact was built; 1 some artifact failed (see the manifest);
2 bad zoo file or usage; 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from converter.core.cli import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, StatusLine, UsageError,
                                add_limit_arguments, add_shard_argument, add_trust_argument, registered_list,
                                shard_option, split_list, start)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        limits = start(args, ("converter",), "%(message)s", Path(args.out) / "convert.log")
    except UsageError as exc:
        return _error(str(exc))
    from .core.errors import WorkbenchError
    from .core.vocabulary import ARTIFACTS, formats
    from .exporters import planned_artifacts
    from .manifest import ArtifactRecord
    from .pipeline import RunOptions, convert
    from .zoo import load_zoo

    entries, planned, heard = {}, {}, {}
    status_line = StatusLine()
    width = max(map(len, ARTIFACTS))

    def progress(model: str, artifact: str, record: ArtifactRecord) -> None:
        outcome = _outcome(record, entries[model].conversion_waiver(artifact) is not None)
        heard.setdefault(model, []).append((artifact, record, outcome))
        status_line.clear()
        if args.verbose:
            print(f"  {model:<22} {artifact:<{width}} {_label(outcome):<7} {record.seconds:7.1f}s"
                  f"{_detail(record)}", file=sys.stderr, flush=True)
            if record.error_detail:
                print(f"  {'':<{width + 32}}raw error: {record.error_detail}", file=sys.stderr, flush=True)
        elif len(heard[model]) == len(planned[model]):
            print(_model_line(model, heard[model], width), file=sys.stderr, flush=True)
        done = len(heard[model])
        if done < len(planned[model]):
            status_line(f"{model}: {done}/{len(planned[model])} artifacts, building {planned[model][done]}")

    try:
        options = RunOptions(out=Path(args.out), models=split_list(args.models),
                             formats=registered_list("--formats", args.formats, formats()), force=args.force,
                             limits=limits, jobs=args.jobs, shard=shard_option(args.shard))
        zoo = load_zoo(args.zoo, tuple(args.trust_module))
        entries.update({entry.name: entry for entry in zoo.models})
        selected = [m.name for m in zoo.select(options.models)]  # unknown --models is a usage error, before any work
        planned.update({name: planned_artifacts(entries[name], options.formats) for name in selected})
        if options.shard is not None:
            selected = options.shard.select(selected)
            print(f"shard {options.shard}: {len(selected)} of the zoo's {len(zoo.models)} models"
                  + (f" ({', '.join(selected)})" if selected else ""), file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            status_line(f"converting {len(selected)} model(s): building the eager references first")
            manifest = convert(zoo, options, progress=progress)
        finally:
            status_line.clear()
    except (WorkbenchError, UsageError) as exc:
        if args.verbose:
            traceback.print_exc()
        return _error(str(exc))
    except KeyboardInterrupt:
        print("interrupted: the previous manifest and artifacts are intact", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.verbose:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)", file=sys.stderr)
        return EXIT_FAILED
    print(_summary(manifest, selected, list(ARTIFACTS), entries))
    counts = _tally([item for items in heard.values() for item in items])
    waived = f", {counts['waived']} failed as the zoo accepts (waived)" if counts["waived"] else ""
    waived += f", {counts['skipped']} skipped (this machine cannot build them)" if counts["skipped"] else ""
    print(f"\n{counts['converted']} converted, {counts['cached']} up to date (not converted again), "
          f"{counts['failed']} failed{waived}"
          + ("  [use --force to convert anyway]" if counts["cached"] and not counts["converted"] else ""))
    print(f"manifest: {Path(args.out) / 'manifest.json'}  ({time.perf_counter() - started:.1f}s)")
    # an explored artifact (a `candidates` format) that fails is reported but, as in the verifier, never blocks
    failed = [(m, a) for m, a, _ in manifest.failed_artifacts()
              if m in selected and entries[m].conversion_waiver(a) is None and entries[m].deploys_artifact(a)]
    return EXIT_FAILED if failed else EXIT_OK


def _parse(argv: list[str] | None) -> argparse.Namespace:
    from converter.core.vocabulary import formats

    parser = argparse.ArgumentParser(prog="python -m converter", description=__doc__.split("\n\n")[0],
                                     usage="python -m converter ZOO [options]",
                                     epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("zoo", help="the zoo YAML file")
    parser.add_argument("--out", default="artifacts", help="artifact folder (default: artifacts)")
    parser.add_argument("--models", help="comma-separated model names (default: all)")
    parser.add_argument("--formats", help=f"comma-separated formats among {','.join(formats())} "
                                          "(default: each model's own)")
    parser.add_argument("--force", action="store_true", help="convert even artifacts that are up to date")
    add_shard_argument(parser)
    parser.add_argument("--jobs", type=_jobs, default=0,
                        help="models converted at once, each export in a worker of its own (default: the physical "
                             "cores; 1 for per-artifact seconds that no other conversion shares the CPU with)")
    add_limit_arguments(parser, "format")
    add_trust_argument(parser)
    parser.add_argument("--verbose", action="store_true", help="debug logs and tracebacks")
    return parser.parse_args(argv)


def _jobs(text: str) -> int:
    value = int(text) if text.strip().isdigit() else -1
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


OUTCOMES = ("converted", "cached", "failed", "waived", "skipped")


def _outcome(record, waived: bool) -> str:
    """Which count an artifact adds to: converted, cached, failed, waived or skipped."""
    if record.ok:
        return "cached" if record.cached else "converted"
    return "skipped" if record.skipped else "waived" if waived else "failed"


def _label(outcome: str) -> str:
    return {"converted": "ok", "failed": "FAILED"}.get(outcome, outcome)


def _detail(record) -> str:
    again = " (failed the same way before: not retried; --force retries)" if record.cached and not record.ok else ""
    return f"  {record.error}{again}" if record.error else ""


def _tally(heard: list) -> dict[str, int]:
    """How many of the (artifact, record, outcome) heard had each outcome."""
    return {outcome: sum(o == outcome for _, _, o in heard) for outcome in OUTCOMES}


def _model_line(model: str, heard: list, width: int) -> str:
    """A model's artifacts in one line (counts and seconds), then one line per artifact that did not build."""
    tally = _tally(heard)
    built = tally["converted"] + tally["cached"]
    parts = [f"{built} built" + (f" ({tally['cached']} up to date)" if tally["cached"] else ""),
             f"{tally['failed']} FAILED" if tally["failed"] else "0 failed"]
    parts += [f"{tally[o]} {o}" for o in ("waived", "skipped") if tally[o]]
    seconds = sum(record.seconds for _, record, _ in heard)
    lines = [f"  {model:<22} {', '.join(parts):<40} {seconds:7.1f}s"]
    lines += [f"      {artifact:<{width}} {_label(outcome)}{_detail(record)}"
              for artifact, record, outcome in heard if outcome in ("failed", "waived", "skipped")]
    return "\n".join(lines)


def _summary(manifest, selected: list[str], artifact_order: list[str], entries: dict) -> str:
    columns = [name for name in artifact_order if any(name in manifest.models[m].artifacts for m in selected)]
    rows = [["model", *columns]]
    for model in selected:
        artifacts = manifest.models[model].artifacts
        rows.append([model, *[_cell(artifacts.get(name), entries[model].conversion_waiver(name) is not None)
                               for name in columns]])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    failures = [f"{m}/{a}" + (" (waived)" if entries[m].conversion_waiver(a) is not None else
                              "" if entries[m].deploys_artifact(a) else " (explored: does not block)")
                for m, a, _ in manifest.failed_artifacts() if m in selected]
    if failures:  # each cause is in its progress line above and in the manifest
        lines += ["", f"failed: {', '.join(failures)}"]
    return "\n".join(lines)


def _cell(record, waived: bool) -> str:
    if record is None:
        return "-"
    if record.skipped:
        return "skipped"
    if not record.ok:
        return "waived" if waived else "FAILED"
    return "cached" if record.cached else f"ok {record.seconds:.1f}s"


if __name__ == "__main__":
    sys.exit(main())
