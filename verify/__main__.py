"""Run the converted models through every runtime on the same inputs, compare them with the PyTorch reference,
time them, write the reports, and exit with the gate's verdict.

Exit codes: 0 every required cell PASS; 1 a cell FAILed or ERRORed, a declared deployment preprocessing check
failed, a required runtime was skipped, or a conversion failed (unless waived by allow_failures in the zoo); with
--selftest, a fault went undetected or the clean model was blocked; with --baseline, a deployed cell slower than the
baseline run by more than the zoo's max_slowdown; 2 usage error (no manifest, bad path, bad zoo, a history file that
cannot be used); 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from converter.core.cli import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, StatusLine, UsageError,
                                add_limit_arguments, add_shard_argument, add_trust_argument, console_verbose,
                                shard_option, split_list, start)


SELFTEST_REPORT = "reports/selftest"


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["merge"]:
        return _merge(given[1:])
    if given[:1] == ["history"]:
        return _history(given[1:])
    if given[:1] == ["diff"]:
        return _diff(given[1:])
    args = _parse(argv)
    if not args.report or args.selftest:
        return _main(args, argv, "")
    from converter.core.files import FolderBusy, folder_lock

    from .cells.environment import new_run_id

    run_id = new_run_id()
    try:  # one run's files in one report folder: a second run refuses rather than interleave its files
        with folder_lock(Path(args.report), f"verify run {run_id}"):
            return _main(args, argv, run_id)
    except FolderBusy as exc:
        return _usage(str(exc))


def _main(args, argv: list[str] | None, run_id: str) -> int:
    try:
        log_file = (Path(args.report or SELFTEST_REPORT) / "selftest.log" if args.selftest
                    else Path(args.report) / "verify.log" if args.report else None)
        limits = start(args, ("verify", "converter"), "%(levelname)s: %(message)s", log_file)
    except UsageError as exc:
        return _usage(str(exc))
    if args.selftest:
        return _selftest(args)
    if not args.report:
        return _usage("--report is required (a folder for the reports)")
    if args.write_zoo and not args.repair:
        return _usage("--write-zoo writes what --repair found: add --repair")
    if args.repair_seconds <= 0:
        return _usage(f"--repair-seconds: {args.repair_seconds:g}, expected more than 0")
    from converter.core.errors import WorkbenchError

    from .api import VerifyOptions, run, write_reports

    try:  # a history or a baseline that cannot be used stops the run before it starts, not after
        store, baseline, missing = _history_and_baseline(args)
    except WorkbenchError as exc:
        return _usage(str(exc))
    try:
        options = VerifyOptions(
            artifacts=Path(args.artifacts), zoo=Path(args.zoo) if args.zoo else None,
            images=Path(args.images) if args.images else None, num_images=args.num_images,
            models=_tuple(split_list(args.models)), runtimes=_tuple(split_list(args.runtimes)),  # run() checks them
            devices=_tuple(split_list(args.devices)), threads=args.threads,
            timing=not args.no_timing, policy=_policy(args), batches=_batches(args.batches), limits=limits,
            partial=args.partial, trusted_modules=tuple(args.trust_module), cache=not args.no_cache,
            command=" ".join(["python -m verify", *(sys.argv[1:] if argv is None else argv)]), run_id=run_id,
            shard=shard_option(args.shard))
        status = StatusLine()
        printed: list[str] = []

        def print_model(result, verdict) -> None:
            status.clear()
            if args.verbose:
                _print_model(result, verdict)
            else:
                if not printed:
                    _print_header()
                _print_model_line(result, verdict)
            printed.append(result.model)
        try:
            verified = run(options, on_model=print_model, on_progress=status)
        finally:
            status.clear()
    except (WorkbenchError, UsageError) as exc:
        return _usage(str(exc))
    except KeyboardInterrupt:
        print("interrupted: no report written", file=sys.stderr)
        return EXIT_INTERRUPTED
    verdict = verified.verdict
    interrupted, repair_error = False, None
    if args.repair:
        try:
            _repair(args, options, verified)
        except KeyboardInterrupt:  # the run's reports and the repairs finished so far are still written
            interrupted = True
        except (WorkbenchError, UsageError) as exc:
            repair_error = str(exc)
    if args.baseline:
        from .history.runs import gate_on_baseline

        gate_on_baseline(verified, baseline, missing)
        verdict = verified.verdict
    report = write_reports(verified, Path(args.report))
    recorded = ""
    if store is not None:  # an interrupted repair leaves the run itself finished
        from .history.runs import record_of

        try:
            store.record(record_of(verified))
            recorded = f"; recorded in {store.path}"
        except WorkbenchError as exc:
            return _usage(f"the run's report is written ({report}), but not recorded: {exc}")
    if interrupted:
        print(f"interrupted: the repair stopped; the run's report and {len(verified.repairs)} finished repair(s) "
              f"-> {report}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if repair_error is not None:  # the run's own report is written; the repair could not run
        return _usage(f"--repair: {repair_error} (the run's report: {report})")
    scope = verified.scope
    shard = (f" (shard {scope.shard}: {len(scope.models)} of the zoo's {len(scope.zoo_models)} models; join the shards "
             "with `python -m verify merge`)" if scope.shard else "")
    print(f"\n{verdict.label}: {len(verdict.blocking)} blocking, {len(verdict.waived)} waived -> {report}{shard}"
          f"{recorded}")
    for line in verdict.blocking:
        print(f"  blocking: {line}")
    return verdict.exit_code


def _history_and_baseline(args):
    """The history to record this run in (None: --no-history) and the baseline run to gate its speed on."""
    from .history.records import SHARD
    from .history.runs import find_run, is_latest
    from .history.store import HistoryError, HistoryStore, NoSuchRun

    store = None if args.no_history else HistoryStore(_history_file(args), writing=True)
    baseline, missing = None, ""
    if args.baseline:
        try:
            baseline = find_run(args.baseline, store)
        except NoSuchRun as exc:
            if not is_latest(args.baseline):  # a run asked for by its id: a mistake
                raise
            kinds = {kind for _, _, kind, *_ in store.runs()} if store is not None else set()
            if kinds == {SHARD}:  # a shard's history: last and last-pass skip shards, so it never finds one
                raise HistoryError(f"{store.path}: holds shard runs only, which {args.baseline} skips: give every "
                                   "shard the same --baseline (a run id of the merged history, or a report "
                                   "folder)") from None
            missing = str(exc)  # a new history, or none passing yet: the first runs of a CI job
    return store, baseline, missing


def _repair(args, options, verified) -> None:
    """Search each repairable failing cell for its fix (verify.repair), print what was found and, with --write-zoo,
    write the proven changes into the zoo file."""
    from .repair.run import REPAIRED, repair_run, zoo_fields
    from .repair.zoo_edit import write_change

    from converter.core.errors import WorkbenchError

    status = StatusLine()
    try:
        repair_run(verified, options, args.repair_seconds, progress=status, repros=Path(args.report) / "repairs",
                   repairs=verified.repairs)
    finally:
        status.clear()
    if not verified.repairs:
        print("\nrepair: no failing cell the repair can search (a float32 cell with other routes, or an int8 or "
              "fp16 ONNX cell outside its budget)")
    for repair in verified.repairs:
        print(f"\nrepair {repair.model}/{repair.artifact}/{repair.runtime}: {repair.status}: {repair.summary}")
        if repair.repro:
            print(f"  minimal repro: {repair.repro}")
        if repair.status == REPAIRED and args.write_zoo and repair.zoo_change:
            fields = ", ".join(key for key, _ in zoo_fields(repair.zoo_change))
            try:
                write_change(Path(repair.zoo), repair.model, repair.zoo_change)
            except (WorkbenchError, OSError) as exc:
                print(f"  not written: {exc}", file=sys.stderr)
                continue
            print(f"  {repair.zoo}: model '{repair.model}': {fields} written; convert again to rebuild it")
        elif repair.snippet:
            print("  the zoo change (--write-zoo writes it):")
            print("".join(f"    {line}\n" for line in repair.snippet.splitlines()), end="")


def _merge(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verify merge", usage="python -m verify merge SHARD_REPORT_DIR... --report DIR",
        description="Join the report folders of every shard of one zoo (python -m verify --shard K/N) into one "
                    "report, with the verdict decided again over all of them. Exit codes as python -m verify; a "
                    "shard that is missing, given twice, or from another zoo, workbench version, commit or set of "
                    "options is a usage error (2).")
    parser.add_argument("shards", nargs="+", metavar="SHARD_REPORT_DIR")
    parser.add_argument("--report", required=True, help="folder for the merged reports")
    parser.add_argument("--history", default="artifacts/history.sqlite",
                        help="the history to record the merged run in (default: %(default)s)")
    parser.add_argument("--no-history", action="store_true", help="do not record the merged run")
    parser.add_argument("--verbose", action="store_true", help="debug logs and tracebacks")
    args = parser.parse_args(argv)
    from converter.core.errors import WorkbenchError
    from converter.core.files import FolderBusy, folder_lock

    from .api import write_reports
    from .cells.environment import new_run_id
    from .judge.gate import decide
    from .report.merge import merge_runs

    run_id, report = new_run_id(), Path(args.report)
    if any(Path(shard).resolve() == report.resolve() for shard in args.shards):
        return _usage(f"--report {report}: is one of the shards; merge into a folder of its own")
    from .history.records import MERGED
    from .history.runs import record_of
    from .history.store import HistoryStore

    try:
        store = None if args.no_history else HistoryStore(args.history, writing=True)
        with folder_lock(report, f"verify merge {run_id}"):
            merged = merge_runs([Path(shard) for shard in args.shards],
                                " ".join(["python -m verify merge", *argv]), run_id)
            written = write_reports(merged, report)
            if store is not None:
                store.record(record_of(merged, MERGED))
    except (WorkbenchError, FolderBusy) as exc:
        return _usage(str(exc))
    verdict = merged.verdict
    _print_header()
    for result in merged.results:
        _print_model_line(result, decide([result], merged.entries))
    print(f"\n{verdict.label}: {len(verdict.blocking)} blocking, {len(verdict.waived)} waived -> {written} "
          f"(merged from {len(args.shards)} shards, {len(merged.results)} models)")
    for line in verdict.blocking:
        print(f"  blocking: {line}")
    return verdict.exit_code


def _history(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verify history", description="The recorded runs, and per cell its status, its worst "
        "difference from the reference (also in units of the reference's noise floor) and its p50 latency over the "
        "runs: printed, and written as history.md, history.csv and a chart per model. Exit codes: 0, or 2 for a "
        "history that cannot be read.")
    _add_history_arguments(parser)
    parser.add_argument("--model", help="one model's cells only")
    parser.add_argument("--runs", type=int, default=20, help="the last this many runs (default: 20)")
    parser.add_argument("--report", default="reports/history",
                        help="folder for history.md, history.csv and <model>-history.png (default: reports/history)")
    args = parser.parse_args(argv)
    from converter.core.errors import WorkbenchError
    from converter.core.files import atomic_write

    from .history.store import HistoryStore
    from .history.tables import draw_history, history_frame, history_lines, runs_table

    if args.runs < 1:
        return _usage(f"--runs: at least 1, got {args.runs}")
    try:
        store = HistoryStore(_history_file(args))
        runs = store.runs(args.runs)
        points = store.cell_points(args.model, args.runs)
    except WorkbenchError as exc:
        return _usage(str(exc))
    if not runs:
        return _usage(f"{store.path}: no run recorded yet (python -m verify --report DIR records one)")
    if args.model and not points:
        known = sorted({p.model for p in store.cell_points(None, args.runs)})
        return _usage(f"--model {args.model}: not in the last {args.runs} runs (has: {', '.join(known)})")
    folder = Path(args.report)
    charts = draw_history(points, folder)
    text = "\n".join([f"# Run history: {store.path}", "", *runs_table(runs), "",
                      "Per cell: its status, its worst output's max |diff| from the reference and that difference in "
                      "the reference's noise floors (float32 cells), and the p50 latency of its first timed batch.",
                      *history_lines(points), "",
                      *[f"![{model}]({path.name})" for model, path in charts.items()]]) + "\n"
    atomic_write(folder / "history.md", text)
    atomic_write(folder / "history.csv", history_frame(points).to_csv(index=False))
    print(text)
    print(f"-> {folder / 'history.md'}, history.csv" + (f", {len(charts)} chart(s)" if charts else ""))
    return EXIT_OK


def _diff(argv: list[str]) -> int:
    from .history.diff import DRIFT_UNITS, FAIL_ON, MIN_SLOWDOWN

    parser = argparse.ArgumentParser(
        prog="python -m verify diff", usage="python -m verify diff RUN_A RUN_B [--fail-on drift,slowdown,status]",
        description="What changed from RUN_A to RUN_B (each a recorded run's id or the start of it, last, last-pass, "
                    "either with ~N for the Nth before it, or a report folder): the cells whose status changed, the outputs whose difference from the "
                    f"reference moved by more than {DRIFT_UNITS:g} noise floors, the timings that moved by more than "
                    f"{MIN_SLOWDOWN:.0%} beyond both runs' 95% intervals (same machine only), the tool versions. "
                    "Exit codes: 0; 1 when a --fail-on category found something; 2 usage error.")
    parser.add_argument("runs", nargs=2, metavar="RUN")
    _add_history_arguments(parser)
    parser.add_argument("--fail-on", default="", help=f"comma-separated among {','.join(FAIL_ON)}: exit 1 when one "
                                                       "found something (default: report only)")
    args = parser.parse_args(argv)
    from converter.core.errors import WorkbenchError

    from .history.diff import diff_runs
    from .history.runs import find_run, is_latest
    from .history.store import HistoryStore
    from .history.tables import diff_lines

    fail_on = tuple(split_list(args.fail_on) or ())
    unknown = [what for what in fail_on if what not in FAIL_ON]
    if unknown:
        return _usage(f"--fail-on: unknown {unknown} (choose from {', '.join(FAIL_ON)})")
    try:  # two report folders need no history
        folders = all(Path(run).is_dir() and not is_latest(run) for run in args.runs)
        store = None if folders else HistoryStore(_history_file(args))
        before, after = (find_run(reference, store) for reference in args.runs)
    except WorkbenchError as exc:
        return _usage(str(exc))
    diff = diff_runs(before, after)
    print("\n".join(diff_lines(diff)))
    failing = diff.failing(fail_on)
    if failing:
        print(f"\nFAIL (--fail-on): {', '.join(failing)}")
        return EXIT_FAILED
    return EXIT_OK


def _add_history_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--history", default=None, help="the history file or sqlite:///path URL (default: "
                                                          "ARTIFACTS/history.sqlite)")
    parser.add_argument("--artifacts", default="artifacts", help="the converter's output folder (default: artifacts)")


def _history_file(args) -> str | Path:
    """--history, else the history beside --artifacts."""
    from .history.store import FILE_NAME

    return args.history or Path(args.artifacts) / FILE_NAME


def _print_header() -> None:
    print(f"{'model':<24} {'samples':<14} {'PASS':>4} {'FAIL':>4} {'ERROR':>5} {'SKIP':>4}  (deployed cells; every "
          "cell: --verbose)",
          file=sys.stderr, flush=True)


def _print_model_line(result, verdict) -> None:
    """One line per model: its counts, the reference's accuracy and the recommendation; then what blocks."""
    from .judge.compare import ERROR, FAIL, PASS, SKIP
    from .report.decision import recommend
    from .tasks import task_of

    deployed = [cell for cell in result.cells if cell.gated]
    counts = [sum(cell.status == status for cell in deployed) for status in (PASS, FAIL, ERROR, SKIP)]
    images = f"{result.samples}" + (" labelled" if result.labels is not None else "") \
        + (f" x{len(result.sizes)} sizes" if len(result.sizes) > 1 else "")
    reference = result.reference
    facts = []
    explored = [cell for cell in result.cells if not cell.gated]
    if explored:
        outside = sum(cell.status in (FAIL, ERROR) for cell in explored)
        facts.append(f"explored {len(explored)} cells ({sum(c.status == PASS for c in explored)} within budget"
                     + (f", {outside} not shippable" if outside else "") + ")")
    if reference is not None and reference.accuracy is not None:
        facts.append(f"{task_of(result).score_name} {100 * reference.accuracy.value:.1f}%")
    chosen = recommend(result) if not result.error else None
    if chosen:
        facts.append(chosen)
    print(f"{result.model:<24} {images:<14} {counts[0]:>4} {counts[1]:>4} {counts[2]:>5} {counts[3]:>4}  "
          + "; ".join(facts), file=sys.stderr, flush=True)
    for line in verdict.blocking:
        print(f"  blocking: {line}", file=sys.stderr, flush=True)
    for line in verdict.waived:
        print(f"  waived: {line}", file=sys.stderr, flush=True)


def _print_model(result, verdict) -> None:
    from converter.core.vocabulary import ARTIFACTS

    from .tasks import task_of

    width = max(map(len, ARTIFACTS))
    indent = " " * (17 + 1 + width + 1 + 9 + 1 + 5)
    labelled = f", labelled: {task_of(result).score_name} per cell" if result.labels is not None else ""
    sizes = f", at {len(result.sizes)} sizes ({'; '.join(result.sizes)})" if len(result.sizes) > 1 else ""
    print(f"{result.model}: {result.samples} samples{labelled}{sizes}", file=sys.stderr, flush=True)
    if result.accuracy_note:
        print(f"  ({result.accuracy_note})", file=sys.stderr, flush=True)
    for cell in result.cells:
        waiver = verdict.waivers.get(cell.key)
        status = (f"{cell.status} (waived: {waiver})" if waiver else cell.status) + ("" if cell.gated else "*")
        reused = f" (reused from {cell.cached})" if cell.cached else ""
        scored = f"acc {100 * cell.accuracy.value:5.1f}%  " if cell.accuracy is not None else ""
        print(f"  {cell.runtime:<17} {cell.artifact:<{width}} {cell.device:<9} {cell.precision:<4} {status:<6} "
              f"{scored}{cell.detail}{reused}", file=sys.stderr, flush=True)
        if cell.divergence:
            print(f"  {indent}{cell.divergence.summary}", file=sys.stderr, flush=True)
    for check in result.preprocessing:
        waiver = verdict.waivers.get(check.key)
        status = (check.status if check.gated else f"{check.status}*") + (f" (waived: {waiver})" if waiver else "")
        print(f"  {'preprocessing':<17} {check.deployment:<{width}} {check.library:<9} {'':<4} {status:<6} "
              f"{check.detail}",
              file=sys.stderr, flush=True)
    if any(not cell.gated for cell in result.cells):
        print(f"  {indent}* explored, not deployed: judged by its budget, never blocking", file=sys.stderr, flush=True)
    if any(not check.gated for check in result.preprocessing):
        print(f"  {indent}* information only: the zoo declares no deployments for this model",
              file=sys.stderr, flush=True)


def _policy(args):
    from .cells.timing import TimingPolicy

    if args.runs < 6:
        raise UsageError(f"--runs: at least 6 timed calls (the median's 95% interval needs them), got {args.runs}")
    if args.warmup < 0 or args.min_time <= 0 or args.max_wait < 0:
        raise UsageError("--warmup and --max-wait must be at least 0 and --min-time above 0")
    default = TimingPolicy()
    return TimingPolicy(warmup_min=args.warmup, warmup_max=max(default.warmup_max, args.warmup),
                        min_runs=args.runs, min_seconds=args.min_time,
                        max_seconds=max(default.max_seconds, args.min_time), run_wait_seconds=args.max_wait)


def _batches(text: str) -> tuple[int, ...]:
    try:
        batches = tuple(sorted({int(b) for b in split_list(text) or []}))
    except ValueError:
        raise UsageError(f"--batches: expected comma-separated integers, got {text!r}") from None
    if not batches or batches[0] < 1:
        raise UsageError(f"--batches: give batch sizes of at least 1, got {text!r}")
    return batches


def _tuple(items: list[str] | None) -> tuple[str, ...] | None:
    return tuple(items) if items else None


def _parse(argv):
    from converter.core.vocabulary import DEVICES, RUNTIMES

    from .cells.timing import DEFAULT_BATCHES, TimingPolicy

    parser = argparse.ArgumentParser(prog="python -m verify", description=__doc__.split("\n\n")[0],
                                     usage="python -m verify --report DIR [options]\n"
                                           "       python -m verify merge SHARD_REPORT_DIR... --report DIR\n"
                                           "       python -m verify history [--model M]\n"
                                           "       python -m verify diff RUN_A RUN_B [--fail-on drift,slowdown,status]\n"
                                           "       python -m verify --selftest [--report DIR] [--seeds 0,1,2]",
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", help="required: folder for report.md, parity.csv, preprocessing.csv, timing.csv, "
                                         "summary.json (with --selftest: selftest.md, selftest.csv; default "
                                         "reports/selftest)")
    parser.add_argument("--artifacts", default="artifacts", help="the converter's output folder (default: artifacts)")
    parser.add_argument("--zoo", help="zoo file for tolerances and waivers (default: the one the manifest names)")
    parser.add_argument("--images", help="folder of jpg/png images (default: seeded synthetic images)")
    parser.add_argument("--num-images", type=int, default=8,
                        help="synthetic images to generate, at least 2 (default: 8)")
    parser.add_argument("--models", help="comma-separated model names (default: all in the manifest)")
    parser.add_argument("--runtimes", help=f"comma-separated among {','.join(RUNTIMES)} (default: all); the "
                                           "reference (torch) always runs")
    parser.add_argument("--devices", help=f"comma-separated among {','.join(DEVICES)} (default: those present here: "
                                          "cpu, and cuda and tensorrt where a runtime finds them; a device asked "
                                          "for, or required by the zoo, that is missing SKIPs with the reason)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads per runtime (default: physical cores)")
    policy = TimingPolicy()
    parser.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)),
                        help="timed batch sizes, comma-separated (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=policy.warmup_min,
                        help="untimed calls at least, before timing; more until the latency settles, at most "
                             f"{policy.warmup_max} (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=policy.min_runs,
                        help="timed calls per batch size, at least 6 (default: %(default)s)")
    parser.add_argument("--min-time", type=float, default=policy.min_seconds,
                        help="seconds of timed calls per batch size, at least (default: %(default)s); timing goes "
                             f"on up to {policy.max_seconds:g} s (or this, if longer) while the median's 95%% "
                             f"interval is wider than +-{policy.max_interval * 100:.0f}%%")
    parser.add_argument("--max-wait", type=float, default=policy.run_wait_seconds,
                        help="seconds in all, per run, to wait for the machine's full speed and to time a batch "
                             "again that the machine slowed during (default: %(default)s; 0: time at once and mark "
                             "what ran slow)")
    parser.add_argument("--no-timing", action="store_true", help="parity only")
    parser.add_argument("--no-cache", action="store_true",
                        help="run and time every cell again, even those whose artifact, inputs, settings, tools, "
                             "code and machine are unchanged since an earlier run (their results are kept in "
                             "ARTIFACTS/.cache/verify)")
    add_shard_argument(parser)
    parser.add_argument("--partial", action="store_true",
                        help="accept a run that --models, --runtimes or --devices narrowed as a (partial) verdict: "
                             "without it such a run blocks, since it is not a deployment verdict")
    add_limit_arguments(parser, "CPU cell")
    add_trust_argument(parser)
    parser.add_argument("--history", help="the run history to record this run in: a file or an sqlite:///path URL "
                                          "(default: ARTIFACTS/history.sqlite); `python -m verify history` shows it")
    parser.add_argument("--no-history", action="store_true", help="do not record this run")
    parser.add_argument("--baseline",
                        help="a recorded run (an id, last, last-pass) or a report folder: a deployed cell slower than "
                             "it beyond both runs' 95%% intervals blocks where the zoo sets max_slowdown; other "
                             "slowdowns are notes")
    parser.add_argument("--repair", action="store_true",
                        help="after the run, search each failing cell for its fix (another route for a float32 "
                             "artifact, the fewest nodes in float32 for an int8 or fp16 ONNX one, a minimal ONNX "
                             "repro), prove it with the gate and add a Repairs section to the report")
    parser.add_argument("--repair-seconds", type=float, default=300.0,
                        help="--repair: seconds of search per model; a try started in time finishes, and the "
                             "gate's proof of what was found comes on top (default: 300)")
    parser.add_argument("--write-zoo", action="store_true",
                        help="--repair: write each proven change into the zoo file (comments and order kept)")
    parser.add_argument("--selftest", action="store_true",
                        help="prove the gate: inject known faults into a small converted model and check each is "
                             "blocked (report default: reports/selftest)")
    parser.add_argument("--seeds", default="0,1,2", help="--selftest: model and image seeds (default: 0,1,2)")
    parser.add_argument("--verbose", action="store_true", help="debug logs and tracebacks")
    return parser.parse_args(argv)


def _selftest(args) -> int:
    from converter.core.files import atomic_write

    from .cells.environment import physical_cores
    from .selftest.run import SelftestError, run_selftest
    from .selftest.table import selftest_frame, selftest_markdown

    try:
        seeds = [int(s) for s in split_list(args.seeds) or []]
    except ValueError:
        return _usage(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if not seeds or min(seeds) < 0:
        return _usage("--seeds: give at least one seed >= 0")
    report = Path(args.report or SELFTEST_REPORT)
    try:
        rows = run_selftest(report, seeds, num_images=args.num_images, threads=args.threads or physical_cores(),
                            on_row=_print_row)
    except SelftestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted: no self-test report written", file=sys.stderr)
        return EXIT_INTERRUPTED
    text = selftest_markdown(rows)
    atomic_write(report / "selftest.md", text)
    atomic_write(report / "selftest.csv", selftest_frame(rows).to_csv(index=False))
    print(text)
    print(f"-> {report / 'selftest.md'} (each run's own report under {report / 'runs'})")
    return EXIT_OK if all(r.detected for r in rows) else EXIT_FAILED


def _print_row(row) -> None:
    verdict = "ok" if row.detected else "NOT DETECTED: " + "; ".join(row.problems)
    print(f"seed {row.seed} {row.fault:<30} {row.got:<45} {verdict}", file=sys.stderr, flush=True)


def _usage(message: str) -> int:
    if sys.exc_info()[0] is not None and console_verbose("verify"):
        traceback.print_exc()  # --verbose: the traceback behind a user error
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

