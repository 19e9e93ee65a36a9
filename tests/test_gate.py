"""The gate on plain results: exit codes, waivers, required runtimes, conversion failures."""
from __future__ import annotations

from dataclasses import replace

import pytest

from converter.zoo import ModelEntry
from verify.judge.gate import decide
from verify.results import Cell, ModelResult


def entry(**fields) -> ModelEntry:
    return ModelEntry(name="m", arch="tests.tiny_models:tiny_cnn", weights="random", **fields)


def cell(runtime="onnxruntime", artifact="onnx", device="cpu", status="PASS", detail="", **kw) -> Cell:
    return Cell("m", artifact, runtime, device, status, detail, **kw)


def result(*cells, **kw) -> ModelResult:
    return ModelResult("m", cells=list(cells), **kw)


REF = dict(runtime="torch", artifact="eager", reference=True)


def test_all_pass_and_optional_gpu_skips_exit_0():
    verdict = decide([result(cell(**REF), cell(), cell(device="cuda", status="SKIP", detail="no GPU"))],
                     {"m": entry()})
    assert verdict.passed and verdict.exit_code == 0 and verdict.blocking == ()


@pytest.mark.parametrize("status", ["FAIL", "ERROR"])
def test_fail_or_error_blocks(status):
    verdict = decide([result(cell(**REF), cell(status=status, detail="boom"))], {"m": entry()})
    assert not verdict.passed and verdict.exit_code == 1
    assert verdict.blocking == (f"m/onnx/onnxruntime@cpu: {status}: boom",)


def test_cpu_skip_blocks_and_required_gpu_skip_blocks():
    skipped_cpu = decide([result(cell(status="SKIP", detail="?"))], {"m": entry()})
    assert not skipped_cpu.passed and "required but skipped" in skipped_cpu.blocking[0]
    gpu = cell(device="cuda", status="SKIP", detail="no GPU")
    assert decide([result(gpu)], {"m": entry()}).passed
    assert not decide([result(gpu)], {"m": entry(required=["onnxruntime@cuda"])}).passed
    assert not decide([result(gpu)], {"m": entry(required=["onnxruntime"])}).passed
    assert not decide([result(gpu)], {"m": entry(required=["onnx"])}).passed  # an artifact
    assert not decide([result(gpu)], {"m": entry(required=["onnxruntime:onnx@cuda"])}).passed
    assert decide([result(gpu)], {"m": entry(required=["onnxruntime:onnx_simplified@cuda"])}).passed
    assert decide([result(gpu)], {"m": entry(required=["onnxruntime@tensorrt"])}).passed
    assert decide([result(gpu)], {"m": entry(required=["paddle-inference"])}).passed


def test_waiver_accepts_a_runtime_and_is_reported():
    failing = cell(runtime="paddle-jit", artifact="paddle", status="FAIL", detail="drift")
    waived = entry(allow_failures=[{"runtime": "paddle-jit", "reason": "known: issue 42"}])
    results = [result(failing)]
    verdict = decide(results, {"m": waived})
    assert verdict.passed
    assert verdict.waivers == {"m/paddle/paddle-jit@cpu": "known: issue 42"}
    assert verdict.waived == ("m/paddle/paddle-jit@cpu: FAIL: drift (known: issue 42)",)
    assert results == [result(failing)]  # the gate decides; it does not write into the results


def test_waiver_can_name_the_artifact_a_runtime_runs():
    fp16 = cell(artifact="onnx_simplified", status="FAIL", detail="drift")
    fp32 = cell(artifact="onnx", status="FAIL", detail="drift")
    waived = entry(allow_failures=[{"runtime": "onnxruntime", "artifact": "onnx_simplified", "reason": "onnxsim bug"}])
    verdict = decide([result(fp16, fp32)], {"m": waived})
    assert list(verdict.waivers) == ["m/onnx_simplified/onnxruntime@cpu"]
    assert verdict.blocking == ("m/onnx/onnxruntime@cpu: FAIL: drift",)


def test_waiver_for_another_device_does_not_apply():
    failing = cell(device="cpu", status="FAIL", detail="drift")
    waived = entry(allow_failures=[{"runtime": "onnxruntime", "device": "tensorrt", "reason": "fp16 kernels"}])
    verdict = decide([result(failing)], {"m": waived})
    assert not verdict.passed
    assert verdict.notes and "matched no failure" in verdict.notes[0]


def test_conversion_failure_blocks_once_unless_waived():
    failed = cell(runtime="paddle-inference", artifact="paddle", status="ERROR",
                  detail="conversion failed: x", conversion_failed=True)
    res = result(cell(**REF), failed, conversion_failures={"paddle": "unsupported ops aten::roll"})
    verdict = decide([res], {"m": entry()})
    assert verdict.blocking == ("m: conversion to paddle failed: unsupported ops aten::roll",)
    # a runtime waiver does not excuse the conversion; an artifact waiver does, and covers its cells
    runtime_only = entry(allow_failures=[{"runtime": "paddle-inference", "reason": "later"}])
    assert not decide([res], {"m": runtime_only}).passed
    artifact = entry(allow_failures=[{"artifact": "paddle", "reason": "x2paddle lacks aten::roll"}])
    verdict = decide([res], {"m": artifact})
    assert verdict.passed and verdict.waived == ("m: conversion to paddle failed (x2paddle lacks aten::roll)",)
    assert verdict.waivers[failed.key] == "x2paddle lacks aten::roll"


def test_model_error_blocks_once():
    res = result(cell(**REF, status="ERROR", detail="flat"), cell(status="ERROR", detail="flat"),
                 error="degenerate reference: flat")
    verdict = decide([res], {"m": entry()})
    assert verdict.blocking == ("m: degenerate reference: flat",)


def test_nothing_verified_is_not_a_pass():
    assert not decide([], {}).passed


def test_an_explored_cell_never_blocks_and_a_deployed_one_does():
    """int8 that nobody asked to deploy (a candidate) is judged by its budget and reported, never blocking; the
    same cell blocks once the zoo deploys it (`formats`) or `required` names it."""
    int8 = cell(artifact="onnx_int8", status="FAIL", detail="int8 cosine 0.9524 < 0.98", precision="int8")
    explored = decide([result(cell(**REF), cell(), replace(int8, gated=False))], {"m": entry(candidates=["onnx_int8"])})
    assert explored.passed and explored.blocking == ()
    assert explored.notes == ("m/onnx_int8/onnxruntime@cpu: FAIL: int8 cosine 0.9524 < 0.98 (explored, not deployed: "
                              "it does not block)",)
    deployed = decide([result(cell(**REF), int8)], {"m": entry(formats=["eager", "onnx_int8"])})
    assert not deployed.passed and deployed.blocking[0].startswith("m/onnx_int8/onnxruntime@cpu: FAIL")


def test_an_explored_skip_never_blocks_unless_required():
    skipped = cell(runtime="paddle-inference-bf16", artifact="paddle", status="SKIP", precision="bf16",
                   detail="Paddle's oneDNN bf16 kernels need bf16 instructions", gated=False)
    assert decide([result(cell(**REF), skipped)], {"m": entry()}).passed
    required = entry(required=["paddle-inference-bf16"])
    assert required.is_deployed("paddle-inference-bf16", "paddle", "cpu")
    verdict = decide([result(cell(**REF), replace(skipped, gated=True))], {"m": required})
    assert not verdict.passed and "required but skipped" in verdict.blocking[0]


def test_an_explored_conversion_failure_is_a_note():
    failed = {"onnx_int8": "quantisation failed"}
    explored = decide([result(cell(**REF), conversion_failures=failed)], {"m": entry(candidates=["onnx_int8"])})
    assert explored.passed and "conversion to onnx_int8 failed: quantisation failed (explored" in explored.notes[0]
    deployed = decide([result(cell(**REF), conversion_failures=failed)],
                      {"m": entry(formats=["eager", "onnx", "onnx_int8"])})
    assert deployed.blocking == ("m: conversion to onnx_int8 failed: quantisation failed",)
