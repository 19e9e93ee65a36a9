"""Predictions, accuracy, the reduced-precision budget and the decision table, on hand-built arrays and results."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from converter.zoo import DEFAULT_BUDGETS, PrecisionBudget
from verify.judge.accuracy import drop_points, judge_precision
from verify.tasks.classification.scores import accuracy, softmax, top_k
from verify.judge.compare import ERROR, FAIL, PASS, Comparison
from verify.report.decision import decision_section, choices, pareto_front, recommendation
from verify.tasks.classification.tables import accuracy_frame, predictions_frame, predictions_section
from verify.results import Cell, ModelResult
from verify.cells.timing import summarise

BUDGET = PrecisionBudget(min_cosine=0.99, top1=0.9, max_accuracy_drop=2.0)


def test_top_k_orders_best_first_and_softmax_sums_to_one():
    logits = np.array([[0.1, 3.0, 2.0, -1.0], [5.0, 1.0, 1.0, 0.0]], np.float32)
    assert top_k(logits, 3).tolist() == [[1, 2, 0], [0, 1, 2]]  # a tie keeps the lower index first
    assert top_k(logits, 10).shape == (2, 4)  # never more than the classes
    assert softmax(logits).sum(axis=1) == pytest.approx([1.0, 1.0])


def test_accuracy_top1_top5_and_per_class():
    predictions = np.array([[0, 1], [1, 0], [1, 0], [0, 1]])
    scored = accuracy(predictions, [0, 0, 1, 1])
    assert scored.metrics == {"top1": 0.5, "top5": 1.0} and scored.value == 0.5
    assert scored.per_class == ((0, 1, 2), (1, 1, 2))
    assert drop_points(scored, accuracy(predictions, [0, 1, 1, 0])) == pytest.approx(-50.0)
    assert drop_points(None, scored) is None


def comparison(cosine=0.999, agreement=1.0, status=FAIL):
    return Comparison(status, "outside atol", samples=8, max_abs_diff=0.3, cosine=cosine,
                      top1_agreement=agreement)


def test_budget_without_labels_reads_agreement_and_cosine():
    assert judge_precision({"logits": comparison()}, BUDGET, "int8", None)[0] == PASS  # fp32 check failed: fine
    status, detail = judge_precision({"logits": comparison(agreement=0.75)}, BUDGET, "int8", None)
    assert status == FAIL and "int8 top-1 agreement 0.750 < 0.9" in detail
    status, detail = judge_precision({"logits": comparison(cosine=0.5)}, BUDGET, "int8", None)
    assert status == FAIL and "cosine 0.5000 < 0.99" in detail


def test_budget_with_labels_reads_the_accuracy_drop_with_one_images_slack():
    # 8 images: one image is 12.5 points, so the budget of 2 points allows 14.5
    status, detail = judge_precision({"logits": comparison(agreement=0.5)}, BUDGET, "int8", 12.5)
    assert status == PASS and "accuracy drop +12.5 points (budget 2 + one image of 8 = 14.50)" in detail
    status, detail = judge_precision({"logits": comparison()}, BUDGET, "int8", 25.0)
    assert status == FAIL and "int8 accuracy drop 25.0 points > 14.50" in detail
    many = Comparison(FAIL, "x", samples=1000, max_abs_diff=0.3, cosine=0.999, top1_agreement=1.0)
    assert judge_precision({"logits": many}, BUDGET, "int8", 3.0)[0] == FAIL  # 3.0 > 2 + 0.1


def test_budget_keeps_an_error():
    broken = Comparison(ERROR, "reference output is constant", samples=8)
    assert judge_precision({"logits": broken}, BUDGET, "fp16", None) == (ERROR, "reference output is constant")


def test_default_budgets_are_ordered_by_precision():
    assert DEFAULT_BUDGETS["fp16"].min_cosine >= DEFAULT_BUDGETS["bf16"].min_cosine
    assert DEFAULT_BUDGETS["fp16"].max_accuracy_drop <= DEFAULT_BUDGETS["int8"].max_accuracy_drop


def labelled_result() -> ModelResult:
    """Four images (ants, ants, bees, bees); the reference gets three right, int8 two, fp16 three."""
    right = np.array([[0, 1], [0, 1], [1, 0], [0, 1]])
    worse = np.array([[0, 1], [1, 0], [1, 0], [0, 1]])

    def cell(artifact, runtime, precision, predictions, latency, reference=False, status=PASS):
        from verify.tasks.classification.scores import accuracy as score

        timings = (summarise(np.full(20, latency / 1000), batch=1), summarise(np.full(10, latency / 100), batch=8))
        ok = Comparison(PASS, "ok", samples=4, max_abs_diff=0.0, cosine=1.0, top1_agreement=1.0)
        return Cell("m", artifact, runtime, "cpu", status, "ok", comparisons={"logits": ok}, timings=timings,
                    reference=reference, precision=precision, predictions=predictions,
                    accuracy=score(predictions, [0, 0, 1, 1]))

    cells = [cell("eager", "torch", "fp32", right, 10.0, reference=True),
             cell("onnx", "onnxruntime", "fp32", right, 8.0),
             cell("onnx_fp16", "onnxruntime", "fp16", right, 9.0),
             cell("onnx_int8", "onnxruntime", "int8", worse, 3.0),
             cell("onnx_int8", "openvino", "int8", worse, 4.0),
             cell("paddle", "paddle-jit", "fp32", right, 1.0, status="FAIL")]
    return ModelResult("m", cells=cells, samples=4, classes=["ants", "bees"], labels=[0, 0, 1, 1],
                       input_names=["ants/a.jpg", "ants/b.jpg", "bees/c.jpg", "bees/d.jpg"],
                       reference_probabilities=np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.7, 0.3]]),
                       artifact_bytes={"eager": 45_000_000, "onnx_int8": 11_000_000}, image_source="4 images")


def test_choices_rank_passing_cells_and_mark_the_pareto_front():
    rows = choices(labelled_result())
    assert [(r.cell.runtime, r.cell.artifact) for r in rows] == [
        ("onnxruntime", "onnx_int8"), ("openvino", "onnx_int8"), ("onnxruntime", "onnx"),
        ("onnxruntime", "onnx_fp16"), ("torch", "eager")]  # the FAILing paddle cell is no choice
    front = {(r.cell.runtime, r.cell.artifact) for r in rows if r.pareto}
    # int8 in ORT is fastest (lower accuracy); fp32 ONNX is the fastest at full accuracy; the rest are beaten
    assert front == {("onnxruntime", "onnx_int8"), ("onnxruntime", "onnx")}
    fastest = rows[0]
    assert fastest.score == 0.5 and fastest.drop == pytest.approx(25.0) and fastest.speedup == pytest.approx(10 / 3)
    assert fastest.size_bytes == 11_000_000
    gained = recommendation([replace(fastest, drop=-2.5, score=0.775)])
    assert "accuracy 77.5% (2.5 points above the reference)" in gained


def test_the_recommendation_keeps_accuracy_and_names_the_faster_lossy_cell():
    rows = choices(labelled_result())
    line = recommendation(rows)
    # int8 is 2.7x faster than fp32 ONNX but loses 25 points: fp32 ONNX is recommended, int8 named beside it
    assert line.startswith("Ship onnxruntime on onnx (fp32, cpu): the fastest cell that passes its gate and loses "
                           "no accuracy") and "(1.2x the reference)" in line and "accuracy 75.0% (as the reference)" in line
    assert ("Faster but lossy: onnxruntime on onnx_int8 (int8), 3.00 ms, accuracy 50.0% (25.0 points below the "
            "reference); `accept_accuracy_drop: 25`") in line
    traded = recommendation(rows, accept_drop=25.0)
    assert traded.startswith("Ship onnxruntime on onnx_int8 (int8, cpu)") and "loses at most 25 points" in traded
    assert "Faster but lossy" not in traded


def test_an_explored_cell_outside_its_budget_is_shown_not_shippable():
    result = labelled_result()
    int8 = next(c for c in result.cells if c.runtime == "onnxruntime" and c.artifact == "onnx_int8")
    result.cells[result.cells.index(int8)] = replace(int8, status="FAIL", gated=False, detail="int8 cosine 0.95 < 0.98")
    rows = choices(result)
    outside = [r for r in rows if r.not_shippable]
    assert [(r.cell.runtime, r.cell.artifact, r.not_shippable) for r in outside] == [
        ("onnxruntime", "onnx_int8", "int8 cosine 0.95 < 0.98")]
    assert not outside[0].pareto and "onnxruntime on onnx_int8" not in recommendation(rows, accept_drop=100)
    text = "\n".join(decision_section(result, None))
    assert "- not shippable: onnxruntime on onnx_int8 (int8): int8 cosine 0.95 < 0.98" in text


def test_an_emulated_precision_is_no_speed_option():
    result = labelled_result()
    fp16 = next(c for c in result.cells if c.artifact == "onnx_fp16")
    fast = replace(fp16, precision="bf16", emulated="bf16 emulated: this CPU (X) has no bf16 instructions",
                   timings=tuple(replace(t, p50_ms=t.p50_ms / 100) for t in fp16.timings))
    result.cells[result.cells.index(fp16)] = fast
    rows = choices(result)
    row = next(r for r in rows if r.cell.artifact == "onnx_fp16")
    assert not row.speed_option and not row.pareto
    assert recommendation(rows).startswith("Ship onnxruntime on onnx (fp32, cpu)")
    text = "\n".join(decision_section(result, None))
    assert "bf16 (emulated)" in text and "- not a speed option on this CPU: bf16 emulated" in text


def test_a_speed_up_from_an_unstable_figure_is_withheld():
    rows = choices(labelled_result())
    shaky = [replace(r, stable=False, interval_ms=(5.0, 14.0)) if r.cell.reference else r for r in rows]
    line = recommendation(shaky)
    assert "x the reference" not in line and "speed-up withheld" in line
    assert "the reference 10.00 ms, 95% interval 5.00-14.00" in line


def test_pareto_front_ignores_untimed_rows():
    rows = choices(labelled_result())
    untimed = [replace(r, latency_ms=math.nan) for r in rows[:1]]
    assert pareto_front(untimed) == set()
    assert recommendation(untimed) is None


def test_prediction_and_accuracy_tables():
    result = labelled_result()
    frame = predictions_frame([result])
    assert len(frame) == 6 * 4
    row = frame[(frame.runtime == "onnxruntime") & (frame.artifact == "onnx_int8") & (frame.image == "ants/b.jpg")]
    assert row.iloc[0].top1 == "bees" and not row.iloc[0].agrees_with_reference and not row.iloc[0].correct
    assert row.iloc[0].reference_top5 == "ants 0.600; bees 0.400"
    scores = accuracy_frame([result])
    overall = scores[(scores["class"] == "(all)") & (scores.artifact == "onnx_int8") & (scores.runtime == "openvino")]
    assert overall.iloc[0].top1 == 0.5 and overall.iloc[0].drop_points == pytest.approx(25.0)
    assert set(scores["class"]) == {"(all)", "ants", "bees"}
    text = "\n".join(predictions_section(result, "predictions/m.png"))
    assert "| bees/d.jpg | bees | ants 0.700; bees 0.300 (**wrong**) | none |" in text
    assert "onnxruntime:onnx_int8 -> bees" in text and "![m predictions](predictions/m.png)" in text


def test_agreement_ignores_a_common_shift_and_unsure_flips():
    from verify.tasks.classification.scores import agreement

    reference = np.array([[2.0, -2.0], [0.05, 0.0], [-3.0, 3.0]])
    shifted = reference + 5.0  # softmax is unchanged; a raw cosine is not
    assert agreement(reference, shifted).cosine == pytest.approx(1.0)
    near_tie = reference.copy()
    near_tie[1] = [0.0, 0.05]  # the reference was unsure (51% against 49%): no confident flip
    found = agreement(reference, near_tie)
    assert found.flips == 0 and found.top1 == 1.0
    confident = reference.copy()
    confident[0] = [-2.0, 2.0]
    found = agreement(reference, confident)
    assert found.flips == 1 and found.top1 == pytest.approx(2 / 3) and found.cosine == pytest.approx(-1.0)


def test_showcase_puts_disagreements_and_mistakes_first_then_each_class_in_turn():
    from verify.tasks.classification.tables import showcase

    result = labelled_result()
    assert showcase(result, 10) == [0, 1, 2, 3]  # all fit
    # image 1: int8 differs from the reference; image 3: the reference is wrong
    assert showcase(result, 2) == [1, 3]
    assert showcase(result, 3) == [0, 1, 3]
