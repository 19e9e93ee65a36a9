"""The verdict in CI formats: JUnit XML (validated against the schema CI readers expect) and the job summary."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import xmlschema

from converter.zoo import ModelEntry
from verify.report.ci import junit_xml, step_summary
from verify.judge.gate import decide
from verify.results import Cell, ModelResult, PreprocessingCheck

SCHEMA = xmlschema.XMLSchema(Path(__file__).parent / "schemas" / "junit.xsd")


def entry(**fields) -> ModelEntry:
    return ModelEntry(name="m", arch="tests.tiny_models:tiny_cnn", weights="random", **fields)


def cell(runtime="onnxruntime", artifact="onnx", device="cpu", status="PASS", detail="ok", **kw) -> Cell:
    return Cell("m", artifact, runtime, device, status, detail, **kw)


def cases(text: str) -> dict[str, ElementTree.Element]:
    SCHEMA.validate(text)  # raises on anything a JUnit reader would reject
    return {case.get("name"): case for case in ElementTree.fromstring(text).iter("testcase")}


def outcome(case: ElementTree.Element) -> str:
    child = next(iter(case), None)
    return "passed" if child is None else child.tag


def test_every_cell_is_a_test_case_with_the_outcome_the_gate_gave_it():
    cells = [cell(runtime="torch", artifact="eager", reference=True, detail="max |diff| 0"),
             cell(status="FAIL", detail="3/4000 values outside tolerance"),
             cell(runtime="paddle-jit", artifact="paddle", status="ERROR", detail="RuntimeError: boom"),
             cell(device="cuda", status="SKIP", detail="no CUDAExecutionProvider"),
             cell(runtime="openvino", artifact="onnx_int8", status="FAIL", detail="int8 budget", precision="int8")]
    checks = [PreprocessingCheck("m", "opencv", "opencv", "FAIL", "channel shift 0.3")]
    model = entry(allow_failures=[{"artifact": "onnx_int8", "reason": "MinMax calibration, issue 7"}])
    result = ModelResult("m", cells=cells, preprocessing=checks)
    verdict = decide([result], {"m": model})
    text = junit_xml([result], verdict, {"m": model})
    found = cases(text)
    assert sorted(found) == sorted(["eager/torch/cpu/fp32", "onnx/onnxruntime/cpu/fp32", "paddle/paddle-jit/cpu/fp32",
                                    "onnx/onnxruntime/cuda/fp32", "onnx_int8/openvino/cpu/int8",
                                    "preprocessing/opencv/opencv"])
    assert {case.get("classname") for case in found.values()} == {"m"}
    assert outcome(found["eager/torch/cpu/fp32"]) == "passed"
    failure = found["onnx/onnxruntime/cpu/fp32"][0]
    assert failure.tag == "failure" and "3/4000 values outside tolerance" in failure.get("message")
    assert outcome(found["paddle/paddle-jit/cpu/fp32"]) == "error"
    assert found["onnx/onnxruntime/cuda/fp32"][0].get("message") == "no CUDAExecutionProvider"
    waived = found["onnx_int8/openvino/cpu/int8"][0]
    assert waived.tag == "skipped" and waived.get("message").startswith("waived (MinMax calibration, issue 7)")
    assert outcome(found["preprocessing/opencv/opencv"]) == "failure"  # a declared deployment check gates
    suite = ElementTree.fromstring(text).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("6", "2", "1", "2")


def test_a_required_skip_a_conversion_failure_and_a_model_error_are_failures():
    required = entry(required=["onnxruntime@cuda"])
    skipped = cell(device="cuda", status="SKIP", detail="no GPU")
    broken = ModelResult("m", cells=[skipped, cell(runtime="paddle-inference", artifact="paddle", status="ERROR",
                                                   detail="conversion failed", conversion_failed=True)],
                         conversion_failures={"paddle": "unsupported ops aten::roll"})
    found = cases(junit_xml([broken], decide([broken], {"m": required}), {"m": required}))
    assert outcome(found["onnx/onnxruntime/cuda/fp32"]) == "failure"
    assert found["convert/paddle"][0].get("message") == "conversion to paddle failed: unsupported ops aten::roll"
    assert outcome(found["paddle/paddle-inference/cpu/fp32"]) == "skipped"  # counted once, as the conversion
    stopped = ModelResult("m", cells=[cell(status="ERROR", detail="no reference")], error="no reference: gone")
    found = cases(junit_xml([stopped], decide([stopped], {"m": entry()}), {"m": entry()}))
    assert outcome(found["model"]) == "error"


@pytest.mark.parametrize("broken", ['<testsuites><testsuite name="m"/></testsuites>',  # no test count
                                    '<testsuites><testsuite name="m" tests="1"><testcase name="x"/></testsuite>'
                                    '</testsuites>',  # no classname
                                    '<testsuites><testsuite name="m" tests="1"><testcase name="x" classname="m">'
                                    '<failure/><skipped/></testcase></testsuite></testsuites>'])  # two outcomes
def test_the_schema_rejects_what_a_junit_reader_would(broken):
    assert not SCHEMA.is_valid(broken)


def test_the_job_summary_has_the_verdict_the_counts_and_the_blocking_lines():
    result = ModelResult("m", cells=[cell(runtime="torch", artifact="eager", reference=True),
                                     cell(status="FAIL", detail="drift"), cell(device="cuda", status="SKIP")])
    text = step_summary([result], decide([result], {"m": entry()}), "reports/report.md")
    assert text.startswith("## Parity: BLOCKED")
    assert "| m | 1 | 1 | 0 | 1 | 0 | 0 |" in text and "- m/onnx/onnxruntime@cpu: FAIL: drift" in text


def test_an_explored_failure_is_a_skipped_case_and_counted_apart():
    """A candidate outside its budget never blocks: JUnit readers must not turn the build red for it."""
    int8 = cell(artifact="onnx_int8", status="FAIL", detail="int8 cosine 0.95 < 0.98", precision="int8", gated=False)
    result = ModelResult("m", cells=[cell(runtime="torch", artifact="eager", reference=True), cell(), int8],
                         conversion_failures={"onnx_fp16": "boom"})
    entries = {"m": entry(candidates=["onnx_fp16", "onnx_int8"])}
    verdict = decide([result], entries)
    assert verdict.passed
    root = ElementTree.fromstring(junit_xml([result], verdict, entries))
    outcomes = {case.get("name"): (case[0].tag, case[0].get("message")) for case in root.iter("testcase") if len(case)}
    assert outcomes["onnx_int8/onnxruntime/cpu/int8"][0] == "skipped"
    assert outcomes["onnx_int8/onnxruntime/cpu/int8"][1].startswith("explored, not deployed (it does not block)")
    assert outcomes["convert/onnx_fp16"][0] == "skipped"
    assert root.get("failures") == "0" and root.get("errors") == "0"
    assert "| m | 2 | 0 | 0 | 0 | 0 | 1 |" in step_summary([result], verdict)
