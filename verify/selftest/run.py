"""python -m verify --selftest: convert a small model with the real converter, inject one fault at a time into a
copy, run the real verifier (its library API, with the fault's runners passed in) on it, and show that the
gate blocks every fault, names the right runtime, and passes the clean model, for several seeds (model
weights and images). The converter runs as its own command, as in CI: verify does not import it."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import yaml

from converter.core.errors import WorkbenchError
from converter.core.images import synthetic_images
from converter.core.machine import physical_cores
from converter.core.reference import load_reference
from converter.core.vocabulary import ARTIFACTS, RUNTIMES
from converter.zoo import AUTO_NOISE_MULTIPLE
from converter.manifest import read_manifest

from ..api import VerifyOptions, VerifyRun, run, write_reports
from ..judge.compare import ERROR, FAIL
from ..judge.gate import BLOCKED, EXIT_BLOCKED, EXIT_PASS, PASSED
from ..report.markdown import parity_frame, preprocessing_frame, summary
from ..runners import registered_runners
from .faults import DETECTOR_MODEL, FAULTS, MODEL, SEQUENCE_SIZES, TEXT_MODEL, Fault, Rebuilt, resign
from .model import INPUT_SIZE
from .table import SelftestRow, named_runtimes

# fp32 tolerances for a five-layer net: its float32 conversions agree to ~1e-6 (measured: 4e-7).
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4, "min_cosine": 0.99999, "top1": 1.0}
REPO = Path(__file__).resolve().parents[2]


class SelftestError(Exception):
    """The self-test could not set itself up (the clean model did not convert)."""


FACTORY_MODULE = "verify.selftest.model"


def zoo_entry(seed: int) -> dict:
    """The self-test model in every fp32 format (its faults are fp32 parity faults; the reduced-precision
    variants are judged by budgets, tested in tests/test_accuracy.py)."""
    fp32 = list(dict.fromkeys(spec.format for spec in ARTIFACTS.values() if spec.precision == "fp32"))
    return {"name": MODEL, "arch": f"{FACTORY_MODULE}:selftest_net", "weights": "random", "num_classes": 10,
            "seed": seed, "input": {"shape": [3, INPUT_SIZE, INPUT_SIZE]},
            "preprocess": {"resize": INPUT_SIZE + 4, "crop": INPUT_SIZE}, "tolerance": TOLERANCE, "formats": fp32}


def text_zoo_entry(seed: int) -> dict:
    """The self-test's text model: token ids and a padding mask at three lengths, an embedding and logits out, in
    the formats its faults are injected into (every fp32 format converts it; the image model covers them all)."""
    return {"name": TEXT_MODEL, "arch": f"{FACTORY_MODULE}:selftest_text_net", "weights": "random", "seed": seed,
            "tolerance": TOLERANCE, "formats": ["eager", "torchscript", "onnx", "openvino"],
            "inputs": [{"name": "input_ids", "kind": "tokens", "shape": ["batch", "sequence"], "vocab": 64},
                       {"name": "attention_mask", "kind": "mask", "of": "input_ids",
                        "shape": ["batch", "sequence"]}],
            "dynamic": {"sequence": list(SEQUENCE_SIZES)},
            "outputs": [{"name": "embedding", "kind": "embedding"}, {"name": "logits", "kind": "logits"}]}


def detector_zoo_entry(seed: int) -> dict:
    """The self-test's detector (boxes, scores, labels) that also segments (mask logits), made by hand: its faults
    are in what a runtime returns, so three formats carry them."""
    return {"name": DETECTOR_MODEL, "arch": f"{FACTORY_MODULE}:selftest_detector", "weights": "random",
            "seed": seed, "input": {"shape": [3, INPUT_SIZE, INPUT_SIZE]},
            "preprocess": {"resize": INPUT_SIZE + 4, "crop": INPUT_SIZE}, "task": "detection",
            "tolerance": TOLERANCE, "formats": ["eager", "torchscript", "onnx"],
            "outputs": [{"name": "boxes", "kind": "boxes"}, {"name": "scores", "kind": "scores"},
                        {"name": "labels", "kind": "labels"}, {"name": "mask", "kind": "mask_logits"}]}


# the self-test's models, in their zoo's order
ENTRIES = {MODEL: zoo_entry, TEXT_MODEL: text_zoo_entry, DETECTOR_MODEL: detector_zoo_entry}


def run_selftest(report: Path, seeds: list[int], num_images: int = 8, threads: int = 1,
                 faults: tuple[Fault, ...] = FAULTS,
                 on_row: Callable[[SelftestRow], None] | None = None,
                 models: tuple[str, ...] = tuple(ENTRIES)) -> list[SelftestRow]:
    """Every fault on every seed, and the clean `models` (with those the faults need) for each seed."""
    rows: list[SelftestRow] = []
    models = tuple(name for name in ENTRIES if name in {*models, *(fault.model for fault in faults)})

    def add(row: SelftestRow) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    with tempfile.TemporaryDirectory(prefix="parity-selftest-") as tmp:
        for seed in seeds:
            clean = Path(tmp) / f"seed-{seed}" / "clean"
            _prepare(clean, seed, num_images, models)
            rebuilt = _rebuild(clean, [f for f in faults if f.rebuilt is not None])
            runs = report / "runs" / f"seed-{seed}"
            add(_judge_clean(seed, _verify(clean, runs / "clean", threads, {})))
            # Faults are independent (each verifies its own copy, its cells in workers of their own, one thread
            # each): one per core at a time. Rows are reported in the faults' order.
            with ThreadPoolExecutor(max(1, physical_cores() // max(1, threads))) as pool:
                pending = [pool.submit(_run_fault, clean, rebuilt, runs, seed, fault, threads) for fault in faults]
                for future in pending:
                    add(future.result())
    return rows


def _run_fault(clean: Path, rebuilt: Path, runs: Path, seed: int, fault: Fault, threads: int) -> SelftestRow:
    work = clean.with_name(fault.name)
    shutil.copytree(clean, work)
    try:
        try:
            if fault.rebuilt is not None:
                _transplant(work, rebuilt, fault)
            if fault.inject is not None:
                fault.inject(work)
        except Exception as exc:  # the fault no longer fits the model: a self-test failure, not a crash
            return SelftestRow(seed, fault.name, fault.description, ", ".join(fault.expected),
                               "not injected", -1, problems=[f"injection failed: {exc}"])
        return _judge_fault(seed, fault, _verify(work, runs / fault.name, threads, fault.runners))
    finally:
        shutil.rmtree(work)


def _convert(zoo: Path, out: Path) -> subprocess.CompletedProcess:
    """The converter's own command line, as a user or CI runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "converter", str(zoo), "--out", str(out)], env=env,
                          capture_output=True, text=True)


def _prepare(folder: Path, seed: int, num_images: int, models: tuple[str, ...]) -> None:
    (folder / "images").mkdir(parents=True)
    for index, image in enumerate(synthetic_images(num_images, seed)):
        image.save(folder / "images" / f"seed{seed}-{index}.png")
    (folder / "zoo.yaml").write_text(yaml.safe_dump({"trusted_modules": [FACTORY_MODULE],
                                                     "models": [ENTRIES[name](seed) for name in models]},
                                                    sort_keys=False))
    done = _convert(folder / "zoo.yaml", folder / "artifacts")
    if done.returncode != 0:
        raise SelftestError(f"the self-test model did not convert (seed {seed}, exit {done.returncode}): "
                            f"{' | '.join(done.stderr.strip().splitlines()[-3:])}")


def _rebuild(clean: Path, faults: list[Fault]) -> Path:
    """Convert, in one run of the converter, a changed copy of the clean model for each rebuilt fault (named
    after the fault, building only its artifact's format). Returns that run's artifacts folder."""
    folder = clean.with_name("rebuilt")
    folder.mkdir()
    if not faults:
        return folder / "artifacts"
    record = read_manifest(clean / "artifacts").models[MODEL]
    reference = (clean / "artifacts" / record.artifacts["eager"].path).parent
    models = []
    for fault in faults:
        spec: Rebuilt = fault.rebuilt
        module = load_reference(reference)
        if spec.mutate is not None:
            spec.mutate(module)
        torch.save(module.state_dict(), folder / f"{fault.name}.pt")
        entry = {**zoo_entry(0), "name": fault.name, "weights": None, "checkpoint": f"{fault.name}.pt",
                 "arch_args": dict(spec.arch_args),
                 "formats": [ARTIFACTS[spec.artifact].format],
                 "onnx": {"simplify": False}}
        models.append({k: v for k, v in entry.items() if k not in ("seed",) and v is not None})
    if models:
        (folder / "zoo.yaml").write_text(yaml.safe_dump({"trusted_modules": [FACTORY_MODULE], "models": models},
                                                        sort_keys=False))
        _convert(folder / "zoo.yaml", folder / "artifacts")  # a failed rebuild shows when it is transplanted
    return folder / "artifacts"


def _transplant(work: Path, rebuilt: Path, fault: Fault) -> None:
    """Put the rebuilt artifact's files in place of the clean one's and re-sign them, as if the converter had
    written them from the clean model."""
    artifact = fault.rebuilt.artifact
    source = read_manifest(rebuilt).models[fault.name].artifacts[artifact]
    if not source.ok:
        raise RuntimeError(f"rebuilding {artifact} failed: {source.error}")
    root = work / "artifacts"
    target = read_manifest(root).models[MODEL].artifacts[artifact]
    if Path(source.path).name != Path(target.path).name:
        raise RuntimeError(f"rebuilt {artifact} has another main file: {source.path}")
    folder = (root / target.path).parent
    shutil.rmtree(folder)
    shutil.copytree((rebuilt / source.path).parent, folder)
    resign(root, artifact)


@dataclass
class Outcome:
    exit_code: int
    verified: VerifyRun | None = None
    error: str = ""


def _verify(work: Path, report: Path, threads: int, runners: dict) -> Outcome:
    """The real verifier on `work`, with the fault's runners in place of the registered ones. The faults are
    fp32 parity faults: the reduced-precision settings (bf16 runtimes), judged by their own budget, stay out."""
    # Each fault's copy of the clean folder carries the clean run's cell cache: a cell the fault leaves alone (same
    # runner class, artifact files, inputs and settings: the cache key) reuses the clean run's outputs and is
    # judged again; every cell the fault touches (a changed file, a faulty runner, other inputs) misses and runs.
    options = VerifyOptions(artifacts=work / "artifacts", zoo=work / "zoo.yaml", images=work / "images",
                            devices=("cpu",), timing=False, threads=threads, partial=True, cache=True)
    chosen = {name: runner for name, runner in {**registered_runners(), **runners}.items()
              if RUNTIMES[name].precision == "fp32"}
    try:
        verified = run(options, runners=chosen)
    except WorkbenchError as exc:
        return Outcome(2, error=str(exc))
    write_reports(verified, report)
    return Outcome(verified.verdict.exit_code, verified)


def _tables(outcome: Outcome) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    verified = outcome.verified
    return (summary(verified.results, verified.verdict, verified.environment),
            parity_frame(verified.results, verified.entries, verified.verdict),
            preprocessing_frame(verified.results, verified.verdict))


def _judge_clean(seed: int, outcome: Outcome) -> SelftestRow:
    row = SelftestRow(seed, "clean", "no fault", PASSED, f"exit {outcome.exit_code}", outcome.exit_code)
    if outcome.verified is None:
        row.problems.append(f"no report: {outcome.error}")
        return row
    summary_, parity, _ = _tables(outcome)
    row.got = PASSED if outcome.exit_code == EXIT_PASS else f"{BLOCKED}: " + "; ".join(summary_["blocking"])
    row.max_abs_diff = float(parity[~parity.detail.str.startswith("reference", na=False)].max_abs_diff.max())
    row.noise_units = _units(parity.dropna(subset=["noise_units"]), max)
    row.detected = outcome.exit_code == EXIT_PASS
    if not row.detected:
        row.problems.append("false alarm on the clean model")
    if row.noise_units > AUTO_NOISE_MULTIPLE:
        row.problems.append(f"tolerance: auto ({AUTO_NOISE_MULTIPLE:g}x the noise floor) would block the clean model: "
                            f"a cell is {row.noise_units:.3g}x from the reference")
    return row


def _units(parity, pick) -> float:
    """Per cell its output furthest from the reference in noise floors, and then `pick` (min, max) of the cells. A
    cell with an output not judged element by element (another size it could not run, NaN, detections) is left out:
    what it is judged by does not depend on atol and rtol."""
    cells = parity.groupby(["model", "artifact", "runtime", "device"]).noise_units
    units = cells.max()[cells.count() == cells.size()]
    return float(pick(units)) if len(units) else math.nan


def _judge_fault(seed: int, fault: Fault, outcome: Outcome) -> SelftestRow:
    if not fault.blocks:  # a harmless difference: judged as the clean model is
        row = _judge_clean(seed, outcome)
        row.fault, row.description = fault.name, fault.description
        row.problems = ["blocked a harmless difference" if p.startswith("false alarm") else p for p in row.problems]
        return row
    expected = set(fault.expected)
    row = SelftestRow(seed, fault.name, fault.description, f"{BLOCKED}: " + ", ".join(sorted(expected)),
                      f"exit {outcome.exit_code}", outcome.exit_code)
    if outcome.verified is None:
        row.problems.append(f"no report: {outcome.error}")
        return row
    summary_, parity, preprocessing = _tables(outcome)
    named = named_runtimes(summary_, fault.model)
    row.got = (f"{BLOCKED}: " if outcome.exit_code == EXIT_BLOCKED else f"exit {outcome.exit_code}: ") \
        + (", ".join(sorted(named)) or "nothing named")
    blamed = parity[(parity.model == fault.model) & parity.runtime.isin(expected) & parity.status.isin([FAIL, ERROR])]
    diffs = list(blamed.max_abs_diff.dropna())
    diffs += list(preprocessing[preprocessing.deployment.isin({e.split(":", 1)[1] for e in expected if ":" in e})]
                  .max_abs_diff.dropna())
    row.max_abs_diff = max(diffs) if diffs else math.nan
    row.noise_units = _units(blamed, min)
    if row.noise_units <= AUTO_NOISE_MULTIPLE:
        row.problems.append(f"tolerance: auto ({AUTO_NOISE_MULTIPLE:g}x the noise floor) would not block it: a blamed "
                            f"cell is only {row.noise_units:.3g}x from the reference")
    if outcome.exit_code != EXIT_BLOCKED:
        row.problems.append(f"not blocked (exit {outcome.exit_code})")
    if named != expected:
        row.problems.append(f"named {sorted(named)}, expected {sorted(expected)}")
    if fault.localise:
        found = [c["first_divergence"] for c in summary_["failing_cells"]
                 if c["model"] == fault.model and c["runtime"] in expected and c.get("first_divergence")]
        row.localised = (found[0].get("module") or "none") if found else "none"
        if row.localised != fault.localise:
            row.problems.append(f"localised {row.localised!r}, expected {fault.localise!r}")
    row.detected = not row.problems
    return row
