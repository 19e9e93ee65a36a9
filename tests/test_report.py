"""Reports from hand-built results: no model, no runtime."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from converter.zoo import ModelEntry
from verify.judge.compare import Comparison
from verify.judge.gate import decide
from verify.report.markdown import PARITY_COLUMNS, markdown, parity_frame, summary
from verify.results import Cell, ModelResult
from verify.cells.timing import batch_of, summarise
from verify.report.timing_report import TIMING_COLUMNS, timing_frame, timing_section

ENTRY = ModelEntry(name="m", arch="tests.tiny_models:tiny_cnn", weights="random",
                   allow_failures=[{"runtime": "paddle-jit", "reason": "known drift, issue 9"}])


def results() -> list[ModelResult]:
    ok = Comparison("PASS", "max |diff| 2e-06", samples=8, max_abs_diff=2e-6, max_rel_diff=1e-6, cosine=1.0,
                    top1_agreement=1.0, top5_overlap=1.0)
    bad = Comparison("FAIL", "cosine 0.99 < 0.99999", samples=8, max_abs_diff=0.3, max_rel_diff=0.1, cosine=0.99,
                     top1_agreement=0.75, top5_overlap=0.9)
    timing = [summarise(np.full(20, 0.005), batch=1), summarise(np.full(10, 0.030), batch=8)]
    cells = [
        Cell("m", "eager", "torch", "cpu", "PASS", "max |diff| 0", comparisons={"logits": ok}, timings=timing,
             reference=True, config={"version": "2.14.1", "threads": 2}),
        Cell("m", "onnx", "onnxruntime", "cpu", "FAIL", bad.reason, comparisons={"logits": bad}, timings=timing,
             config={"providers": ["CPUExecutionProvider"], "threads": 2}),
        Cell("m", "paddle", "paddle-jit", "cpu", "ERROR", "RuntimeError: boom"),
        Cell("m", "onnx", "onnxruntime", "cuda", "SKIP", "no CUDAExecutionProvider"),
    ]
    return [ModelResult("m", cells=cells, samples=8, inputs=np.zeros((8, 3, 4, 4), np.float32),
                        conversion_failures={"torchscript": "TracingCheckError: graphs differ"},
                        flops_per_sample=10 ** 9)]


def test_markdown_puts_the_verdict_first_and_shows_everything():
    res = results()
    res[0].conversion_details = {"torchscript": "raw <trace> text"}
    verdict = decide(res, {"m": ENTRY})
    text = markdown(res, verdict, {"cpu": "test cpu", "threads": 2, "peak_fp32_gflops": 533.3},
                    charts={"m": "charts/m-timing.png"})
    lines = text.splitlines()
    assert text.count("raw &lt;trace&gt; text") == 1 and "<details><summary>raw error</summary>" in text
    assert lines[0] == "# Parity report: BLOCKED"
    assert "- m/onnx/onnxruntime@cpu: FAIL: cosine 0.99 < 0.99999" in text
    assert "- m: conversion to torchscript failed: TracingCheckError: graphs differ" in text
    assert "known drift, issue 9" in text  # the waiver is shown
    matrix = [line for line in lines[lines.index("## Matrix"):lines.index("## m")] if line.startswith("| ")]
    assert matrix[0] == "| runtime | artifact | device | m |"
    assert "| onnxruntime | onnx | cpu | FAIL 3.0e-01 |" in matrix and "| paddle-jit | paddle | cpu | ERROR (waived) |" in matrix
    assert "| torch | eager | cpu | REF |" in matrix
    # a row that every model skips is one line of reasons under the matrix, not a column of SKIPs
    assert not any("cuda" in line for line in matrix)
    assert "- onnxruntime@cuda: no CUDAExecutionProvider" in text and "Not run on this machine (1 cells):" in text
    assert "- paddle-jit (paddle) cpu: ERROR: RuntimeError: boom (waived: known drift, issue 9)" in text
    assert "## Conversion failures" in text and "| test cpu |" in text
    # the timing table: latency at batch 1, throughput at 8, GFLOP/s and % of the machine's peak
    assert "| artifact | runtime | device | b1 p50 ms | 95% int. | b8 img/s | GFLOP/s | % peak |" in text
    assert "| eager | torch | cpu | 5.00 | +-0% | 266.7 | 267 (b8) | 50% |" in text
    assert "![m latency and throughput](charts/m-timing.png)" in text
    assert "inputs saved in `inputs/m.npz`" in text
    assert "providers=['CPUExecutionProvider']" in text


def test_parity_and_timing_frames():
    res = results()
    parity = parity_frame(res, {"m": ENTRY}, decide(res, {"m": ENTRY}))
    assert list(parity.columns) == PARITY_COLUMNS and len(parity) == 4
    row = parity[parity.runtime == "onnxruntime"].iloc[0]
    assert row.status == "FAIL" and row.max_abs_diff == 0.3 and row.top1_agreement == 0.75 and row.required
    assert not parity[parity.device == "cuda"].iloc[0].required
    assert math.isnan(parity[parity.runtime == "paddle-jit"].iloc[0].max_abs_diff)
    assert parity[parity.runtime == "paddle-jit"].iloc[0].waiver == "known drift, issue 9"
    timing = timing_frame(res, peak_gflops=400.0)
    assert list(timing.columns) == TIMING_COLUMNS and len(timing) == 4

    assert timing.threads.tolist() == [2, 2, 2, 2] and timing.precision.tolist() == ["fp32"] * 4
    row = timing[timing.batch == 8].iloc[0]
    assert row.gflops == pytest.approx(8 / 0.030) and row.pct_of_peak == pytest.approx(100 * 8 / 0.030 / 400)
    assert row.stable and row.runs == 10
    unknown = timing_frame([replace(res[0], flops_per_sample=None)])  # not counted: no figure, never a guess
    assert unknown.gflops.isna().all() and unknown.pct_of_peak.isna().all()


def test_the_tolerance_to_pass_and_non_finite_values_are_shown():
    res = results()
    onnx = res[0].cells[1]
    onnx.comparisons["logits"] = replace(onnx.comparisons["logits"], atol_to_pass=0.31, rtol_to_pass=0.012)
    res[0].cells[2] = replace(res[0].cells[2], status="FAIL", detail="output contains 3 NaN", comparisons={
        "logits": Comparison("FAIL", "output contains 3 NaN", samples=8, non_finite=3)})
    verdict = decide(res, {"m": ENTRY})
    parity = parity_frame(res, {"m": ENTRY}, verdict)
    row = parity[parity.runtime == "onnxruntime"].iloc[0]
    assert row.atol_to_pass == 0.31 and row.rtol_to_pass == 0.012 and row.non_finite == 0
    assert parity[parity.runtime == "paddle-jit"].iloc[0].non_finite == 3
    text = markdown(res, verdict, {"cpu": "test cpu", "threads": 2})
    assert "| onnx | onnxruntime | cpu | fp32 | FAIL | 3.00e-01 | 1.00e-01 |  | 3.1e-01 / 1.2e-02 |" in text
    assert "| paddle | paddle-jit | cpu | fp32 | FAIL (waived) | 3 NaN/Inf |" in text
    assert "| paddle-jit | paddle | cpu | FAIL 3 NaN/Inf (waived) |" in text

def test_summary_lists_failing_cells_and_the_verdict():
    res = results()
    verdict = decide(res, {"m": ENTRY})
    data = summary(res, verdict, {})
    assert data["verdict"] == "BLOCKED" and data["exit_code"] == 1
    assert {(c["runtime"], c["status"]) for c in data["failing_cells"]} == {("onnxruntime", "FAIL"),
                                                                             ("paddle-jit", "ERROR")}
    assert data["cells"] == {"PASS": 1, "FAIL": 1, "ERROR": 1, "SKIP": 1}


def test_timing_statistics():
    stats = summarise(np.array([0.001 * i for i in range(1, 101)]), batch=4)
    assert stats.p50_ms == 50.5 and round(stats.p99_ms, 2) == 99.01 and stats.mean_ms == 50.5
    assert round(stats.throughput_ips, 3) == round(4 / 0.0505, 3)
    assert (stats.ci_low_ms, stats.ci_high_ms) == (40.0, 61.0) and stats.min_ms == 1.0
    assert not stats.stable  # latencies from 1 to 100 ms: the median's interval is +-21%
    batch = batch_of(np.arange(3 * 2).reshape(3, 2).astype(np.float32), 8)
    assert batch.shape == (8, 2) and batch[3].tolist() == [0.0, 1.0]


def test_divergence_and_preprocessing_are_reported_everywhere():
    from verify.cells.localize import Divergence
    from verify.judge.preprocessing import PreprocessingComparison
    from verify.report.markdown import PREPROCESSING_COLUMNS, preprocessing_frame
    from verify.results import PreprocessingCheck

    res = results()
    res[0].cells[1] = replace(res[0].cells[1], divergence=Divergence(
        True, "first divergence at ONNX node /mid/conv/Conv (Conv), module mid.conv",
        "/mid/conv/Conv", "Conv", "mid.conv", "mid.bn", 0.05, 4e-4, 7))
    res[0].preprocessing = [
        PreprocessingCheck("m", "opencv", "opencv", "PASS", "top-1 agreement 1.00",
                           PreprocessingComparison("PASS", "top-1 agreement 1.00", 0.003, 0.3, 0.2, 1.0)),
        PreprocessingCheck("m", "bgr", "opencv", "FAIL", "channel mean moved by 2",
                           PreprocessingComparison("FAIL", "channel mean moved by 2", 2.0, 3.4, 1.7, 0.5)),
    ]
    verdict = decide(res, {"m": ENTRY})
    assert "m/preprocessing:bgr: FAIL: channel mean moved by 2" in verdict.blocking
    assert any(line.endswith("[first divergence at ONNX node /mid/conv/Conv (Conv), module mid.conv]")
               for line in verdict.blocking)
    text = markdown(res, verdict, {})
    assert "- onnxruntime (onnx) cpu: first divergence at ONNX node /mid/conv/Conv" in text
    assert "| bgr | opencv | FAIL | 2 | 1.7 | 0.50 | 0 |" in text and "- bgr: channel mean moved by 2" in text
    frame = preprocessing_frame(res, verdict)
    assert list(frame.columns) == PREPROCESSING_COLUMNS and list(frame.status) == ["PASS", "FAIL"]
    assert parity_frame(res, {"m": ENTRY}, verdict).first_divergence.iloc[1].startswith("first divergence")
    data = summary(res, verdict, {})
    onnx = next(c for c in data["failing_cells"] if c["runtime"] == "onnxruntime")
    assert onnx["first_divergence"]["module"] == "mid.conv"
    assert data["failing_preprocessing"][0]["deployment"] == "bgr"


def test_multi_output_cells_have_one_parity_row_per_output_and_the_worst_status():
    ok = Comparison("PASS", "max |diff| 1e-06", samples=4, max_abs_diff=1e-6, cosine=1.0, top1_agreement=1.0)
    bad = Comparison("FAIL", "1/64 values outside", samples=4, max_abs_diff=0.2, cosine=0.99)
    cell = Cell("m", "onnx", "onnxruntime", "cpu", "FAIL", "embedding: 1/64 values outside",
                comparisons={"logits": ok, "embedding": bad})
    res = [ModelResult("m", cells=[cell], samples=4, outputs=["logits", "embedding"])]
    verdict = decide(res, {"m": ENTRY})
    frame = parity_frame(res, {"m": ENTRY}, verdict)
    assert list(zip(frame.output, frame.status, frame.cell_status)) == [("logits", "PASS", "FAIL"),
                                                                       ("embedding", "FAIL", "FAIL")]
    assert verdict.blocking == ("m/onnx/onnxruntime@cpu: FAIL: embedding: 1/64 values outside",)
    assert summary(res, verdict, {})["failing_cells"][0]["outputs"] == {"logits": "PASS", "embedding": "FAIL"}
    text = markdown(res, verdict, {})
    assert "outputs logits, embedding" in text
    assert "| onnxruntime | onnx | cpu | FAIL 2.0e-01 |" in text  # the matrix shows the failing output's diff
    assert "| onnx | onnxruntime | cpu | fp32 | embedding | FAIL | 2.00e-01 |" in text


def test_informational_preprocessing_never_blocks_but_is_shown():
    from verify.results import PreprocessingCheck

    ref = Cell("m", "eager", "torch", "cpu", "PASS", "", reference=True)
    check = PreprocessingCheck("m", "opencv", "opencv", "FAIL", "3/8 confident top-1 predictions changed", gated=False)
    res = [ModelResult("m", cells=[ref], preprocessing=[check])]
    verdict = decide(res, {"m": ENTRY})
    assert verdict.passed and "information" in verdict.notes[0] and "m/preprocessing:opencv" in verdict.notes[0]
    assert "| opencv | opencv | FAIL (info) |" in markdown(res, verdict, {})


def test_a_cell_above_the_measured_peak_says_the_peak_is_wrong():
    res = results()
    text = "\n".join(timing_section(res[0], peak_gflops=100.0, chart=None))
    # never above 100% (issue 25): a cell that beats every kernel of its precision is that precision's peak, named
    assert "| eager | torch | cpu | 5.00 | +-0% | 266.7 | 267 (b8) | 100% |" in text
    assert "The fp32 peak is the rate of torch eager on m at batch 8: it beat every fp32 kernel measured" in text
    noisy = replace(res[0].cells[0], timings=(summarise(np.linspace(0.001, 0.1, 30), batch=1),))
    assert "| eager | torch | cpu | 50.50~ |" in "\n".join(timing_section(replace(res[0], cells=[noisy]), None, None))


def test_each_model_with_timings_gets_a_png_chart(tmp_path):
    from verify.report.charts import chart_file, write_timing_charts

    charts = write_timing_charts(results() + [ModelResult("untimed")], tmp_path)
    assert charts == {"m": "charts/m-timing.png"}
    assert (tmp_path / "charts" / "m-timing.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart_file("../x y") == "charts/.._x_y-timing.png"  # never a path out of the charts folder


def test_an_unchanged_chart_is_copied_from_the_drawn_ones_and_a_changed_one_is_drawn(tmp_path, monkeypatch):
    from verify.report import charts

    drawn_calls = []
    real = charts.timing_chart
    monkeypatch.setattr(charts, "timing_chart", lambda result: drawn_calls.append(result.model) or real(result))
    drawn = tmp_path / "drawn"
    first = results()
    charts.write_timing_charts(first, tmp_path / "a", "run-a", drawn)
    # the same results read back from the cell cache: floats for numpy scalars, a `cached` time on each cell
    reread = [replace(first[0], cells=[replace(c, cached="2026-12-03 08:00:00 UTC") for c in first[0].cells])]
    charts.write_timing_charts(reread, tmp_path / "b", "run-b", drawn)
    assert drawn_calls == ["m"] and len(list(drawn.glob("*.png"))) == 1
    def doubled(t):
        return replace(t, p50_ms=t.p50_ms * 2, ci_low_ms=t.ci_low_ms * 2, ci_high_ms=t.ci_high_ms * 2)
    slower = [replace(first[0], cells=[replace(c, timings=tuple(map(doubled, c.timings))) for c in first[0].cells])]
    charts.write_timing_charts(slower, tmp_path / "c", "run-c", drawn)
    assert drawn_calls == ["m", "m"]
    a, b = (tmp_path / "a" / "charts" / "m-timing.png").read_bytes(), (tmp_path / "b" / "charts" / "m-timing.png").read_bytes()
    assert a != b and len(a) == len(b) and b"run-b" in b  # the same drawing, each stamped with its own run


def test_long_image_names_keep_their_start_and_end_in_a_grid_caption():
    from verify.tasks.classification.grid import short_name

    assert short_name("ants_00012.jpg") == "ants_00012.jpg"
    assert short_name("grace_hopper_mirrored.jpg") == "grace_h\u2026r_mirrored.jpg"
    assert len(short_name("x" * 100 + ".jpeg")) == 22
