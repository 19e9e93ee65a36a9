"""The gate's cost on this machine: the main job's commands timed as whole processes, cold and unchanged, median of 3.

    python benchmarks/main_job.py [--zoo zoo.yaml] [--artifacts DIR] [--repeat 3] [--selftest]
                                  [--steps convert_cold,convert_rerun,...] [--write docs/measurements.md]

The steps, in this order (the goals are the issue's, for 2 cores):

    convert_cold           python -m converter ZOO --out FRESH_FOLDER, a new folder each run
    convert_rerun          python -m converter ZOO --out ARTIFACTS, unchanged                   goal <= 5 s
    verify_no_timing_cold  python -m verify --no-timing, the cell cache removed first           goal <= 45 s
    verify_cold            python -m verify, the cell cache removed first                       goal <= 120 s
    verify_rerun           the last of the two verify commands again, unchanged                 goal <= 10 s
    selftest               python -m verify --selftest, once (only with --selftest)             goal <= 180 s

"The cell cache" is ARTIFACTS/.cache/verify (verify/cells/cache.py). ARTIFACTS/.cache/machine-speed.json stays: it is the
machine's remembered full speed, not a result, and a user's first run after an edit has it too. A re-run repeats the
command that ran just before it, which filled the cache; where that command did not run just before (a subset of the
steps), it runs once first, not timed. With every step, verify_rerun repeats verify_cold: the main job unchanged.

ARTIFACTS is a temporary folder unless --artifacts names one (its cell cache is then removed by the cold steps). The
zoo's demo files (`python -m converter.demo`) are written first where the zoo reads them and they are missing. Each run
is timed from start to exit with its exit code and the resident memory of its largest process; a non-zero exit (the
verifier's 1 when the gate blocks) is a finding recorded in the table, not the end of the benchmark. Prints a line per
run and the table; --write puts the table in its section of that markdown file. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from converter.core.files import atomic_write  # noqa: E402
from converter.core.machine import cpu_features, physical_cores  # noqa: E402
from converter.demo import DEFAULT_PATH as DEMO_CHECKPOINT  # noqa: E402
from converter.manifest import tool_versions  # noqa: E402
from verify.cells.cache import CACHE_FOLDER  # noqa: E402

BEGIN = "<!-- benchmarks/main_job.py: begin -->"
END = "<!-- benchmarks/main_job.py: end -->"
PROSE_WIDTH = 118  # docs/ wraps its paragraphs near 120 columns


@dataclass(frozen=True)
class Step:
    """One measured command. `arguments` follow `python`; {zoo}, {out}, {artifacts} and {report} stand for paths."""

    name: str
    arguments: tuple[str, ...]
    goal_s: float | None
    fresh_out: bool = False  # {out} is a new, empty folder each run
    reads_artifacts: bool = False  # needs ARTIFACTS converted from the zoo
    clear_cache: bool = False  # the verifier's cell cache is removed before each run
    rerun: bool = False  # every timed run repeats the command that ran just before it
    rerun_of: tuple[str, ...] = ()  # a re-run repeats the command of whichever of these steps ran last, else its own
    once: bool = False  # one run whatever --repeat says


CONVERT = ("-m", "converter", "{zoo}")
VERIFY = ("-m", "verify", "--artifacts", "{artifacts}", "--report", "{report}")
STEPS = (
    Step("convert_cold", (*CONVERT, "--out", "{out}"), None, fresh_out=True),
    Step("convert_rerun", (*CONVERT, "--out", "{artifacts}"), 5.0, rerun=True),
    Step("verify_no_timing_cold", (*VERIFY, "--no-timing"), 45.0, reads_artifacts=True, clear_cache=True),
    Step("verify_cold", VERIFY, 120.0, reads_artifacts=True, clear_cache=True),
    Step("verify_rerun", VERIFY, 10.0, reads_artifacts=True, rerun=True,
         rerun_of=("verify_no_timing_cold", "verify_cold")),
    Step("selftest", ("-m", "verify", "--selftest", "--report", "{report}"), 180.0, once=True),
)
STEP_NAMES = tuple(step.name for step in STEPS)
STEP_BY_NAME = {step.name: step for step in STEPS}
OPTIONAL_STEPS = ("selftest",)


@dataclass(frozen=True)
class Run:
    seconds: float
    exit_code: int
    peak_mb: float | None  # the largest resident set among the process and the descendants it waited for


@dataclass(frozen=True)
class StepResult:
    """A measured step: its runs and what they add up to."""

    step: str
    command: str
    runs: tuple[Run, ...]
    goal_s: float | None

    @property
    def median_s(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def within_goal(self) -> bool | None:
        """None: the step has no goal."""
        return None if self.goal_s is None else self.median_s <= self.goal_s

    @property
    def exit_codes(self) -> tuple[int, ...]:
        return tuple(run.exit_code for run in self.runs)

    @property
    def peak_mb(self) -> float | None:
        peaks = [run.peak_mb for run in self.runs if run.peak_mb is not None]
        return max(peaks) if peaks else None


@dataclass(frozen=True)
class Machine:
    cpu: str
    avx512f: bool
    avx512_bf16: bool
    amx: bool
    cores: int
    date: str
    commit: str
    tools: dict[str, str]


def select_steps(names: str | None, selftest: bool) -> tuple[Step, ...]:
    """The steps named (comma-separated; default: all but the optional ones), in STEPS' order, the self-test added
    where `selftest`."""
    wanted = [name.strip() for name in names.split(",") if name.strip()] if names else [
        name for name in STEP_NAMES if name not in OPTIONAL_STEPS]
    unknown = [name for name in wanted if name not in STEP_NAMES]
    if unknown:
        raise ValueError(f"unknown step {unknown[0]!r} (steps: {', '.join(STEP_NAMES)})")
    if selftest:
        wanted.append("selftest")
    return tuple(step for step in STEPS if step.name in wanted)


def command_of(step: Step, ran: list[str]) -> tuple[str, ...]:
    """The arguments `step` runs, given the steps that ran before it: a re-run repeats the latest of its
    `rerun_of` steps."""
    earlier = [name for name in ran if name in step.rerun_of]
    return STEP_BY_NAME[earlier[-1]].arguments if earlier else step.arguments


def expand(arguments: tuple[str, ...], paths: dict[str, str]) -> tuple[str, ...]:
    return tuple(argument.format(**paths) for argument in arguments)


def display_command(arguments: tuple[str, ...], zoo: str) -> str:
    """The command as a reader would type it: the zoo as given, the other paths by their role."""
    shown = {"zoo": zoo, "out": "FRESH_FOLDER", "artifacts": "ARTIFACTS", "report": "REPORT"}
    return " ".join(("python", *expand(arguments, shown)))


def demo_paths(zoo: dict, zoo_folder: Path, demo_folder: Path) -> list[Path]:
    """The paths the zoo (its parsed YAML) reads from inside the demo's folder: checkpoints, images and calibration
    images, relative to the zoo's folder as the zoo resolves them."""
    found = []
    for entry in [zoo.get("defaults") or {}, *(zoo.get("models") or [])]:
        calibration = entry.get("calibration")
        for value in (entry.get("checkpoint"), entry.get("images"),
                      calibration.get("images") if isinstance(calibration, dict) else None):
            if isinstance(value, str):
                path = Path(os.path.normpath(zoo_folder / value))
                if path.is_relative_to(demo_folder):
                    found.append(path)
    return found


def machine_line(machine: Machine) -> str:
    def yes(flag: bool) -> str:
        return "yes" if flag else "no"
    return (f"Machine: {machine.cpu}, {machine.cores} physical cores (avx512f {yes(machine.avx512f)}, avx512_bf16 "
            f"{yes(machine.avx512_bf16)}, amx {yes(machine.amx)}). Date: {machine.date}. Commit: {machine.commit}.")


def render_section(results: list[StepResult], machine: Machine, repeat: int) -> str:
    """The markdown section (without its markers): where and when, the table, the commands."""
    runs = "one run" if repeat == 1 else f"the median of {repeat} runs"
    once = " (the self-test: one run)" if repeat > 1 and any(r.step == "selftest" for r in results) else ""
    lines = ["## The main job's cost, measured", "",
             "Written by `python benchmarks/main_job.py --write docs/measurements.md`; do not edit it by hand.",
             machine_line(machine), "",
             *textwrap.wrap(f"Each step is {runs}{once}: the wall time of the whole process. Cold: a new `--out` "
                            f"folder for the converter, the cell cache (ARTIFACTS/{CACHE_FOLDER.as_posix()}) removed "
                            "for the verifier. Re-run: the same command again, right after a run that filled the "
                            "cache.", PROSE_WIDTH), ""]
    if machine.tools:
        lines += ["Tools: " + ", ".join(f"{name} {version}" for name, version in machine.tools.items()) + ".", ""]
    lines += ["| step | median s | runs (s) | goal | within goal | exit codes | largest process MB |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for result in results:
        goal = "" if result.goal_s is None else f"<= {result.goal_s:g} s"
        within = {None: "", True: "yes", False: "no"}[result.within_goal]
        peak = "" if result.peak_mb is None else f"{result.peak_mb:.0f}"
        lines.append(f"| {result.step} | {result.median_s:.1f} | {', '.join(f'{r.seconds:.1f}' for r in result.runs)} "
                     f"| {goal} | {within} | {', '.join(map(str, result.exit_codes))} | {peak} |")
    lines += ["", *textwrap.wrap("An exit code other than 0 is a finding (the verifier exits 1 when the gate "
                                 "blocks); the time still counts. The commands (ARTIFACTS: the zoo converted; "
                                 "REPORT: a scratch folder):", PROSE_WIDTH), ""]
    lines += [f"- {result.step}: `{result.command}`" for result in results]
    return "\n".join(lines) + "\n"


def replace_section(document: str, section: str, markers: tuple[str, str] = (BEGIN, END)) -> str:
    """`document` with the text between the markers (BEGIN and END) replaced by `section`; without the markers, the
    section goes in before the first `## ` heading (after the intro), or at the end. Nothing else changes."""
    BEGIN, END = markers  # noqa: N806 (the module's names, for another benchmark's section)
    block = f"{BEGIN}\n{section.rstrip()}\n{END}\n"
    lines = document.splitlines(keepends=True)
    stripped = [line.strip() for line in lines]
    if BEGIN in stripped and END in stripped[stripped.index(BEGIN):]:
        begin = stripped.index(BEGIN)
        end = stripped.index(END, begin)
        return "".join(lines[:begin]) + block + "".join(lines[end + 1:])
    depth, heading = 0, None
    for index, line in enumerate(lines):
        marker = line.strip()
        depth += marker.startswith("<!-- ") and marker.endswith(": begin -->")
        depth -= marker.startswith("<!-- ") and marker.endswith(": end -->")
        if depth == 0 and line.startswith("## "):
            heading = index
            break
    if heading is None:
        separator = "" if not document else "\n" if document.endswith("\n") else "\n\n"
        return document + separator + block
    return "".join(lines[:heading]) + block + "\n" + "".join(lines[heading:])


def publish(section: str, document: Path | None, markers: tuple[str, str] = (BEGIN, END)) -> None:
    """Print a benchmark's section and, given a document (--write), replace its part of it."""
    print(section)
    if document is not None:
        atomic_write(document, replace_section(document.read_text(), section, markers))


def describe_machine() -> Machine:
    features = cpu_features()
    return Machine(cpu=features.model, avx512f="avx512f" in features.flags,
                   avx512_bf16="avx512_bf16" in features.flags, amx=features.amx, cores=physical_cores(),
                   date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), commit=git_commit(),
                   tools=tool_versions())


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        changed = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (with uncommitted changes)" if changed else head


def run_process(arguments: tuple[str, ...], log: Path) -> Run:
    """One process from start to exit; its output goes to `log`."""
    with log.open("wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, *arguments], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)})
        # wait4, not wait: its usage counts the process and every descendant it waited for (the workers)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Run(seconds, process.returncode, usage.ru_maxrss / 1024 if usage.ru_maxrss else None)


def log_tail(log: Path, lines: int = 5) -> str:
    text = log.read_text(errors="replace").splitlines()
    return "\n".join(f"    | {line}" for line in text[-lines:])


class Bench:
    """Runs the steps in one scratch folder, remembering the command that ran last (what a re-run repeats)."""

    def __init__(self, zoo: Path, zoo_shown: str, artifacts: Path, scratch: Path, repeat: int):
        self.zoo, self.zoo_shown, self.artifacts, self.scratch, self.repeat = zoo, zoo_shown, artifacts, scratch, repeat
        self.fresh_out = scratch / "fresh-out"
        self.last: tuple[str, ...] | None = None
        self.ran: list[str] = []

    def paths(self, out: Path) -> dict[str, str]:
        return {"zoo": str(self.zoo), "out": str(out), "artifacts": str(self.artifacts),
                "report": str(self.scratch / "report")}

    def conversion_of_artifacts(self) -> tuple[str, ...]:
        return expand((*CONVERT, "--out", "{artifacts}"), self.paths(self.artifacts))

    def untimed(self, what: str, arguments: tuple[str, ...]) -> None:
        log = self.scratch / "untimed.log"
        run = run_process(arguments, log)
        print(f"{what} (not timed): {run.seconds:.1f} s, exit {run.exit_code}", flush=True)
        if run.exit_code != 0:
            print(log_tail(log), flush=True)
        self.last = arguments

    def measure(self, step: Step, converted: bool) -> StepResult:
        """`converted`: ARTIFACTS was converted from the zoo earlier in this benchmark (else it is, first)."""
        if step.reads_artifacts and not converted:
            self.untimed(f"converting the zoo into {self.artifacts}", self.conversion_of_artifacts())
        count = 1 if step.once else self.repeat
        template = command_of(step, self.ran)
        runs = []
        for index in range(count):
            # the last cold conversion goes into ARTIFACTS itself while that does not exist: as cold there, one
            # conversion fewer
            out = self.artifacts if step.fresh_out and index == count - 1 and not self.artifacts.exists() else \
                self.fresh_out
            arguments = expand(template, self.paths(out))
            if step.rerun and self.last != arguments:
                self.untimed(f"{step.name}: a first run for the re-runs to repeat", arguments)
            if step.clear_cache:
                shutil.rmtree(self.artifacts / CACHE_FOLDER, ignore_errors=True)
            log = self.scratch / f"{step.name}-{index + 1}.log"
            run = run_process(arguments, log)
            if step.fresh_out:
                shutil.rmtree(self.fresh_out, ignore_errors=True)
            runs.append(run)
            self.last = arguments
            peak = "" if run.peak_mb is None else f", largest process {run.peak_mb:.0f} MB"
            print(f"{step.name} run {index + 1}/{count}: {run.seconds:.1f} s, exit {run.exit_code}{peak}", flush=True)
            if run.exit_code != 0:
                print(log_tail(log), flush=True)
        self.ran.append(step.name)
        return StepResult(step.name, display_command(template, self.zoo_shown), tuple(runs), step.goal_s)

    def run_all(self, steps: tuple[Step, ...]) -> list[StepResult]:
        results, converted = [], False
        for step in steps:
            results.append(self.measure(step, converted))
            converted = converted or step.reads_artifacts or self.last == self.conversion_of_artifacts()
        return results


def write_demo_if_missing(zoo: Path) -> bool:
    """False: the demo was needed and could not be written."""
    demo = zoo.parent / DEMO_CHECKPOINT
    wanted = demo_paths(yaml.safe_load(zoo.read_text()) or {}, zoo.parent, demo.parent)
    missing = [path for path in wanted if not path.exists()]
    if not missing:
        return True
    print(f"writing the demo ({missing[0]} is missing)", flush=True)
    return subprocess.run([sys.executable, "-m", "converter.demo", "--out", str(demo)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", default="zoo.yaml", help="(default: zoo.yaml)")
    parser.add_argument("--artifacts", type=Path,
                        help="the folder verified (default: a temporary one); its cell cache is removed by the cold "
                             "steps, and convert_rerun converts the zoo into it")
    parser.add_argument("--repeat", type=int, default=3, help="runs per step; the table gives their median (default 3)")
    parser.add_argument("--selftest", action="store_true", help="include the self-test (one run; its goal: 3 minutes)")
    parser.add_argument("--steps", help=f"comma-separated among {','.join(STEP_NAMES)} (default: all but selftest)")
    parser.add_argument("--write", type=Path,
                        help="put the table in this markdown file's section (default: print it only)")
    args = parser.parse_args()
    try:
        steps = select_steps(args.steps, args.selftest)
    except ValueError as exc:
        parser.error(str(exc))
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    zoo = Path(args.zoo).resolve()
    if not zoo.is_file():
        parser.error(f"no zoo file at {zoo}")
    machine = describe_machine()
    print(machine_line(machine), flush=True)
    if not write_demo_if_missing(zoo):
        print("the demo could not be written: nothing measured", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="main-job-") as scratch:
        artifacts = args.artifacts.resolve() if args.artifacts else Path(scratch) / "artifacts"
        results = Bench(zoo, args.zoo, artifacts, Path(scratch), args.repeat).run_all(steps)
    section = render_section(results, machine, args.repeat)
    print("\n" + section)
    if args.write:
        document = args.write.read_text() if args.write.exists() else ""
        atomic_write(args.write, replace_section(document, section))
        print(f"-> {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
