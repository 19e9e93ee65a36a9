"""The self-test's results as plain rows, and the table they make: pure functions, no I/O."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from converter.zoo import AUTO_NOISE_MULTIPLE

from ..judge.compare import ERROR, FAIL, PASS

SELFTEST_COLUMNS = ["seed", "fault", "description", "expected", "got", "exit_code", "max_abs_diff",
                    "noise_units", "localised", "detected"]


@dataclass
class SelftestRow:
    seed: int
    fault: str  # "clean" for the fault-free run
    description: str
    expected: str
    got: str
    exit_code: int
    max_abs_diff: float = math.nan
    # in units of the reference's noise floor: a fault's least changed blamed cell, the clean model's most changed
    # cell (float32 cells judged element by element; NaN where none is): what calibrates `tolerance: auto`
    noise_units: float = math.nan
    localised: str = ""  # the module the divergence report named ("" when not asked for)
    detected: bool = False  # a fault blocked with exactly the expected runtimes named; clean: passed
    problems: list[str] = field(default_factory=list)


def named_runtimes(summary: dict, model: str) -> set[str]:
    """What the gate blamed: the runtimes of failing cells, failing preprocessing checks, or the reference
    when the whole model was stopped by it."""
    error = (summary["models"].get(model) or {}).get("error") or ""
    named = {"torch"} if error.startswith("reference") else \
        {cell["runtime"] for cell in summary["failing_cells"] if cell["status"] in (FAIL, ERROR)
         and cell.get("model", model) == model}
    return named | {f"preprocessing:{p['deployment']}" for p in summary.get("failing_preprocessing", [])
                    if p.get("gated", True)}


def selftest_frame(rows: list[SelftestRow]) -> pd.DataFrame:
    return pd.DataFrame([{c: getattr(r, c) for c in SELFTEST_COLUMNS} | {"problems": "; ".join(r.problems)}
                         for r in rows], columns=SELFTEST_COLUMNS + ["problems"])


def calibration_lines(rows: list[SelftestRow]) -> list[str]:
    """How the self-test calibrates `tolerance: auto`: the clean models' cells below its multiple of the noise
    floor, every fault judged element by element above it."""
    passing = [r for r in rows if r.expected == PASS]  # the clean models, and the harmless differences
    clean = [r.noise_units for r in passing if not math.isnan(r.noise_units)]
    faults = [r for r in rows if r.expected != PASS and not math.isnan(r.noise_units)]
    if not clean or not faults:
        return []
    lowest = min(faults, key=lambda r: r.noise_units)
    return [f"`tolerance: auto` holds float32 cells to {AUTO_NOISE_MULTIPLE:g}x the reference's noise floor: the clean "
            f"models' cells (and the harmless differences') reach at most {_times(max(clean))}, and the "
            f"{len(faults)} fault runs judged element by element are at least {_times(lowest.noise_units)} "
            f"({lowest.fault}, seed {lowest.seed}), so each of them also blocks under it and no clean run does.", ""]


def _times(units: float) -> str:
    return f"{units:,.0f}x" if units >= 100 else f"{units:.2g}x"


def selftest_markdown(rows: list[SelftestRow]) -> str:
    failed = [r for r in rows if not r.detected]
    seeds = sorted({r.seed for r in rows})
    faults = sorted({r.fault for r in rows if r.fault != "clean"})
    verdict = PASS if rows and not failed else FAIL
    lines = [f"# Gate self-test: {verdict}", "",
             f"{len(faults)} injected faults x {len(seeds)} seed{'s' if len(seeds) != 1 else ''} "
             f"({', '.join(map(str, seeds))}), and the clean "
             f"model for each seed. A fault counts as detected when the real verifier exits 1 and names exactly "
             f"the expected runtimes (and, where asked, the divergence report names the changed layer); a harmless "
             f"difference (expected PASS) counts when the verifier passes it.", ""]
    if failed:
        lines += ["**Not detected / false alarms:**", ""]
        lines += [f"- seed {r.seed} {r.fault}: {'; '.join(r.problems)}" for r in failed]
        lines.append("")
    lines += calibration_lines(rows)
    header = ["seed", "fault", "expected", "got", "max abs diff", "noise x", "localised", "detected"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        diff = "n/a (non-finite, or no output)" if math.isnan(r.max_abs_diff) else f"{r.max_abs_diff:.3g}"
        units = "-" if math.isnan(r.noise_units) else f"{r.noise_units:.3g}"
        cells = [str(r.seed), f"{r.fault}: {r.description}", r.expected, r.got, diff, units, r.localised or "-",
                 "yes" if r.detected else "**NO**"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
