"""python -m verify --selftest: convert a small model, inject one fault at a time into a copy, run the real
verifier on it, and show that the gate blocks every fault, names the right runtime, and passes the clean
model, for several seeds (model weights and images)."""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from converter.images import synthetic_images
from converter.manifest import read_manifest

from .faults import FAULTS, MODEL, Fault
from .model import INPUT_SIZE
from .table import SelftestRow, named_runtimes

# fp32 tolerances for a five-layer net: its float32 conversions agree to ~1e-6 (measured: 4e-7).
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4, "min_cosine": 0.99999, "top1": 1.0}


class SelftestError(Exception):
    """The self-test could not set itself up (the clean model did not convert)."""


def zoo_entry(seed: int) -> dict:
    return {"name": MODEL, "arch": "verify.selftest.model:selftest_net", "weights": "random", "num_classes": 10,
            "seed": seed, "input": {"shape": [3, INPUT_SIZE, INPUT_SIZE]},
            "preprocess": {"resize": INPUT_SIZE + 4, "crop": INPUT_SIZE}, "tolerance": TOLERANCE}


def run_selftest(report: Path, seeds: list[int], num_images: int = 8, threads: int = 1,
                 faults: tuple[Fault, ...] = FAULTS) -> list[SelftestRow]:
    rows: list[SelftestRow] = []
    with tempfile.TemporaryDirectory(prefix="parity-selftest-") as tmp:
        for seed in seeds:
            clean = Path(tmp) / f"seed-{seed}" / "clean"
            _prepare(clean, seed, num_images)
            runs = report / "runs" / f"seed-{seed}"
            rows.append(_judge_clean(seed, _verify(clean, runs / "clean", threads, {})))
            _progress(rows[-1])
            for fault in faults:
                work = clean.with_name(fault.name)
                shutil.copytree(clean, work)
                try:
                    if fault.inject is not None:
                        fault.inject(work)
                except Exception as exc:  # the fault no longer fits the model: a self-test failure, not a crash
                    rows.append(SelftestRow(seed, fault.name, fault.description, ", ".join(fault.expected),
                                            "not injected", -1, problems=[f"injection failed: {exc}"]))
                else:
                    rows.append(_judge_fault(seed, fault, _verify(work, runs / fault.name, threads, fault.runners)))
                _progress(rows[-1])
                shutil.rmtree(work)
    return rows


def _progress(row: SelftestRow) -> None:
    verdict = "ok" if row.detected else "NOT DETECTED: " + "; ".join(row.problems)
    print(f"seed {row.seed} {row.fault:<30} {row.got:<45} {verdict}", file=sys.stderr, flush=True)


def _prepare(folder: Path, seed: int, num_images: int) -> None:
    from converter.pipeline import RunOptions, convert_zoo
    from converter.zoo import load_zoo

    (folder / "images").mkdir(parents=True)
    for index, image in enumerate(synthetic_images(num_images, seed)):
        image.save(folder / "images" / f"seed{seed}-{index}.png")
    (folder / "zoo.yaml").write_text(yaml.safe_dump({"models": [zoo_entry(seed)]}, sort_keys=False))
    convert_zoo(load_zoo(folder / "zoo.yaml"), RunOptions(out=folder / "artifacts"))
    failed = {a: r.error for a, r in read_manifest(folder / "artifacts").models[MODEL].artifacts.items() if not r.ok}
    if failed:
        raise SelftestError(f"the self-test model did not convert (seed {seed}): {failed}")


@dataclass
class Outcome:
    exit_code: int
    report: Path


def _verify(work: Path, report: Path, threads: int, runners: dict) -> Outcome:
    """The real verifier CLI on `work`, with `runners` swapped into the registry while it runs."""
    from verify.__main__ import main
    from verify.runners import RUNNERS

    report.mkdir(parents=True, exist_ok=True)
    argv = ["--artifacts", str(work / "artifacts"), "--zoo", str(work / "zoo.yaml"), "--images", str(work / "images"),
            "--report", str(report), "--devices", "cpu", "--no-timing", "--threads", str(threads)]
    saved = dict(RUNNERS)
    try:
        RUNNERS.update(runners)
        with open(report / "verify.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            code = main(argv)
    finally:
        RUNNERS.clear()
        RUNNERS.update(saved)
    return Outcome(code, report)


def _read(outcome: Outcome) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    summary = json.loads((outcome.report / "summary.json").read_text())
    return summary, pd.read_csv(outcome.report / "parity.csv"), pd.read_csv(outcome.report / "preprocessing.csv")


def _judge_clean(seed: int, outcome: Outcome) -> SelftestRow:
    row = SelftestRow(seed, "clean", "no fault", "PASS", f"exit {outcome.exit_code}", outcome.exit_code)
    try:
        summary, parity, _ = _read(outcome)
    except (OSError, ValueError) as exc:
        row.problems.append(f"no report: {exc}")
        return row
    row.got = "PASS" if outcome.exit_code == 0 else "BLOCKED: " + "; ".join(summary["blocking"])
    row.max_abs_diff = float(parity[~parity.detail.str.startswith("reference", na=False)].max_abs_diff.max())
    row.detected = outcome.exit_code == 0
    if not row.detected:
        row.problems.append("false alarm on the clean model")
    return row


def _judge_fault(seed: int, fault: Fault, outcome: Outcome) -> SelftestRow:
    expected = set(fault.expected)
    row = SelftestRow(seed, fault.name, fault.description, "BLOCKED: " + ", ".join(sorted(expected)),
                      f"exit {outcome.exit_code}", outcome.exit_code)
    try:
        summary, parity, preprocessing = _read(outcome)
    except (OSError, ValueError) as exc:
        row.problems.append(f"no report: {exc}")
        return row
    named = named_runtimes(summary, MODEL)
    row.got = ("BLOCKED: " if outcome.exit_code == 1 else f"exit {outcome.exit_code}: ") + (", ".join(sorted(named)) or "nothing named")
    blamed = parity[parity.runtime.isin(expected) & parity.status.isin(["FAIL", "ERROR"])]
    diffs = list(blamed.max_abs_diff.dropna())
    diffs += list(preprocessing[preprocessing.deployment.isin({e.split(":", 1)[1] for e in expected if ":" in e})]
                  .max_abs_diff.dropna())
    row.max_abs_diff = max(diffs) if diffs else math.nan
    if outcome.exit_code != 1:
        row.problems.append(f"not blocked (exit {outcome.exit_code})")
    if named != expected:
        row.problems.append(f"named {sorted(named)}, expected {sorted(expected)}")
    if fault.localise:
        found = [c["first_divergence"] for c in summary["failing_cells"]
                 if c["runtime"] in expected and c.get("first_divergence")]
        row.localised = (found[0].get("module") or "none") if found else "none"
        if row.localised != fault.localise:
            row.problems.append(f"localised {row.localised!r}, expected {fault.localise!r}")
    row.detected = not row.problems
    return row
