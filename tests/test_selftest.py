"""The gate's self-test: every injected fault is blocked with the right runtime named, the clean model passes
for several seeds, and the self-test itself can fail (a fault that changes nothing is reported undetected)."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from verify.__main__ import main as verify_main
from verify.selftest.faults import FAULTS, MODEL, BgrInputPaddleInference, Fault
from verify.selftest.run import run_selftest
from verify.selftest.table import SelftestRow, named_runtimes, selftest_markdown


@pytest.mark.slow
def test_selftest_cli_detects_every_fault_without_a_false_alarm(tmp_path, capsys):
    report = tmp_path / "selftest"
    assert verify_main(["--selftest", "--seeds", "0", "--report", str(report)]) == 0
    frame = pd.read_csv(report / "selftest.csv")
    assert len(frame) == 1 + len(FAULTS) and frame.detected.all(), frame[~frame.detected].to_dict("records")
    clean = frame[frame.fault == "clean"]
    assert list(clean.got) == ["PASS"] and (clean.max_abs_diff < 1e-5).all()
    # `tolerance: auto`'s calibration: the clean model's cells within a few noise floors, every fault judged element
    # by element far above the multiple (a row where either fails is not `detected`)
    assert 0 < clean.noise_units.max() < 5
    assert frame.set_index("fault").noise_units[["onnx-weight-1pct", "onnx-float16", "bgr-input"]].min() > 1000
    faults = frame[frame.fault != "clean"].set_index(["seed", "fault"])
    for fault in FAULTS:
        row = faults.loc[(0, fault.name)]
        if not fault.blocks:  # a harmless difference: passed, as the clean model is
            assert (row.exit_code, row.got) == (0, "PASS")
            continue
        assert row.exit_code == 1 and row.got == "BLOCKED: " + ", ".join(sorted(fault.expected))
        if fault.localise:
            assert row.localised == fault.localise
    text = (report / "selftest.md").read_text()
    assert text.startswith("# Gate self-test: PASS") and "| 0 | onnx-float16" in text
    assert "`tolerance: auto` holds float32 cells to 20x the reference's noise floor: the clean models' cells" in text
    console = capsys.readouterr()
    assert "Gate self-test: PASS" in console.out
    assert "UserWarning" not in console.err  # library warnings go to selftest.log (once per process: maybe none here)
    # The self-test model has a bilinear resize, which Paddle 3.3's oneDNN cannot run: the fallback is reported.
    assert "onednn_fallback=" in (report / "runs" / "seed-0" / "clean" / "report.md").read_text()


@pytest.mark.slow
def test_the_clean_selftest_model_passes_on_other_seeds(tmp_path):
    """No false alarm on other weights and images: the clean models alone (every fault above ran on seed 0), half
    of a whole seed's cost (most of which is converting the models)."""
    rows = run_selftest(tmp_path, [1], faults=())
    assert [(row.seed, row.fault, row.got, row.detected) for row in rows] == [(1, "clean", "PASS", True)]


@pytest.mark.slow
def test_selftest_reports_faults_it_cannot_see_and_wrong_blame(tmp_path):
    noop = Fault("no-op", "changes nothing", ("onnxruntime",))
    misnamed = Fault("misnamed", "BGR into Paddle Inference, blamed on ONNX Runtime", ("onnxruntime",),
                     runners={"paddle-inference": BgrInputPaddleInference})
    rows = run_selftest(tmp_path, [0], num_images=4, faults=(noop, misnamed), models=(MODEL,))
    by_fault = {row.fault: row for row in rows}
    assert by_fault["clean"].detected
    assert not by_fault["no-op"].detected and "not blocked (exit 0)" in by_fault["no-op"].problems
    assert not by_fault["misnamed"].detected
    assert by_fault["misnamed"].problems == ["named ['paddle-inference'], expected ['onnxruntime']"]
    assert selftest_markdown(rows).startswith("# Gate self-test: FAIL")


def test_named_runtimes_from_a_summary():
    summary = {"models": {"selftest": {"error": None}},
               "failing_cells": [{"runtime": "onnxruntime", "status": "FAIL"}, {"runtime": "onnxruntime", "status": "FAIL"}],
               "failing_preprocessing": [{"deployment": "opencv-bgr"}]}
    assert named_runtimes(summary, "selftest") == {"onnxruntime", "preprocessing:opencv-bgr"}
    stopped = {"models": {"selftest": {"error": "reference (torch eager, CPU): two runs differ"}},
               "failing_cells": [{"runtime": r, "status": "ERROR"} for r in ("torch", "onnxruntime")]}
    assert named_runtimes(stopped, "selftest") == {"torch"}


def test_selftest_table_marks_misses():
    rows = [SelftestRow(0, "clean", "no fault", "PASS", "PASS", 0, 1e-7, detected=True),
            SelftestRow(0, "nan-output", "one NaN", "BLOCKED: paddle-jit", "exit 0: nothing named", 0, math.nan,
                        problems=["not blocked (exit 0)"])]
    text = selftest_markdown(rows)
    assert text.startswith("# Gate self-test: FAIL")
    assert "- seed 0 nan-output: not blocked (exit 0)" in text and "**NO**" in text and "n/a (non-finite, or no output)" in text


@pytest.mark.parametrize("argv, message", [
    (["--selftest", "--seeds", "a"], "--seeds: expected comma-separated integers"),
    (["--selftest", "--seeds", ","], "--seeds: give at least one seed"),
    ([], "--report is required"),
])
def test_usage_errors(argv, message, capsys):
    assert verify_main(argv) == 2
    assert message in capsys.readouterr().err


def test_paddle_state_loads_as_tensors_in_a_thread_that_did_not_import_paddle(tmp_path):
    """The self-test injects faults from threads; paddle imported in another thread left them in static mode."""
    import subprocess
    import sys

    code = ("import threading, numpy as np\n"
            "from pathlib import Path\n"
            "def save():\n"
            "    import paddle\n"
            f"    paddle.save({{'w': paddle.to_tensor(np.ones((2, 3), 'float32'))}}, {str(tmp_path / 'x.pdparams')!r})\n"
            "def load():\n"
            "    from verify.selftest.faults import load_paddle_state\n"
            f"    print(tuple(load_paddle_state(Path({str(tmp_path / 'x.pdparams')!r}))['w'].shape))\n"
            "for step in (save, load):\n"
            "    thread = threading.Thread(target=step); thread.start(); thread.join()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "(2, 3)"
