"""The verifier end to end through its CLI: reports, and a gate that demonstrably blocks."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
import yaml
from onnx import numpy_helper
from PIL import Image

from converter.manifest import read_manifest
from tests.conftest import cannot_run_here, convert_tiny_zoo, private_copy, tiny_entry, verify_api
from tests.tiny_models import tiny_cnn
from verify.__main__ import main as verify_main
from verify.report.charts import RUN_ID_KEY
from verify.runners.onnxruntime_runner import OnnxRuntimeRunner
from verify.selftest.faults import resign

FAST = ["--devices", "cpu", "--partial", "--num-images", "4"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """tiny (healthy) and flat (a model whose output ignores its input) converted once."""
    root = tmp_path_factory.mktemp("verify")
    flat = tiny_cnn()
    with torch.no_grad():
        flat.classifier.weight.zero_()
        flat.classifier.bias.copy_(torch.linspace(-1, 1, 10))
    torch.save(flat.state_dict(), root / "flat.pt")
    return convert_tiny_zoo(root, [tiny_entry("tiny"), tiny_entry("flat", weights=None, checkpoint="flat.pt")])


@pytest.fixture
def workdir(converted, tmp_path):
    return private_copy(converted, tmp_path)


def run(workdir, *extra, models="tiny", zoo=None, timing=False):
    args = ["--artifacts", str(workdir / "artifacts"), "--report", str(workdir / "reports"),
            "--zoo", str(zoo or workdir / "zoo.yaml"), *FAST, *extra, *([] if timing else ["--no-timing"])]
    if models:
        args += ["--models", models]
    return verify_main(args)


def parity(workdir) -> pd.DataFrame:
    return pd.read_csv(workdir / "reports" / "parity.csv")


def status(frame, artifact, runtime, device="cpu") -> str:
    row = frame[(frame.artifact == artifact) & (frame.runtime == runtime) & (frame.device == device)]
    assert len(row) == 1, (artifact, runtime, device)
    return row.iloc[0].status


def test_clean_model_passes_and_writes_every_report(workdir):
    code = run(workdir, "--runs", "6", "--warmup", "0", "--min-time", "0.05", "--batches", "1,2", timing=True)
    reports = workdir / "reports"
    assert code == 0
    markdown = (reports / "report.md").read_text()
    assert markdown.startswith("# Parity report: PASS")
    assert "## Matrix" in markdown and "## Environment" in markdown and "onednn=True" in markdown
    frame = parity(workdir)
    # every CPU cell passes, but a cell this CPU cannot run (bf16 without bf16 instructions): a SKIP with the reason
    expected = ["SKIP" if cannot_run_here(runtime) else "PASS" for runtime in frame.runtime]
    assert list(frame.status) == expected
    assert set(frame.device) == {"cpu"} and "devices | cpu (asked for; not run: cuda, tensorrt" in markdown
    assert {("onnx", "onnxruntime"), ("onnx_simplified", "onnxruntime"), ("paddle", "paddle-inference"),
            ("paddle", "paddle-jit"), ("torchscript", "torchscript")} <= set(zip(frame.artifact, frame.runtime))
    fp32 = frame[frame.precision == "fp32"]
    assert fp32.max_abs_diff.max() < 1e-4 and (fp32.cosine > 0.99999).all()
    # the reduced-precision cells passed by their budget, farther from the reference than fp32 is
    assert set(frame.precision) == {"fp32", "fp16", "bf16", "int8"}
    ran = frame[frame.status == "PASS"]
    assert (ran[ran.precision != "fp32"].max_abs_diff > 1e-4).all()
    assert set(ran.batch_invariance) == {"batches 1, 3 and 4 agree"}
    timing = pd.read_csv(reports / "timing.csv")
    assert set(timing.batch) == {1, 2} and (timing.p50_ms > 0).all() and (timing.throughput_ips > 0).all()
    assert (timing.runs >= 5).all() and (timing.gflops > 0).all() and (timing.pct_of_peak > 0).all()
    assert set(timing.precision) == {"fp32", "fp16", "bf16", "int8"}
    assert (reports / "charts" / "tiny-timing.png").is_file() and "](charts/tiny-timing.png)" in markdown
    assert "peak_fp32_gflops" in markdown and "timing_method" in markdown
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["verdict"] == "PASS (partial)" and summary["exit_code"] == 0 and summary["failing_cells"] == []
    checks = pd.read_csv(reports / "preprocessing.csv")
    assert list(checks.deployment) == ["pil-numpy", "opencv"] and set(checks.status) == {"PASS"}
    assert checks.set_index("deployment").loc["pil-numpy"].max_abs_diff < 1e-5  # PIL under both
    saved = np.load(reports / "inputs" / "tiny.npz")
    assert saved["inputs"].shape == (4, 3, 32, 32) and len(saved["names"]) == 4
    junit = ElementTree.parse(reports / "junit.xml").getroot()
    run_id = summary["provenance"]["run_id"]  # every file names the run that wrote it
    assert set(frame.run_id) == set(timing.run_id) == set(checks.run_id) == {run_id}
    assert junit.find("testsuite/properties/property").get("value") == run_id and run_id in markdown
    for chart in ("charts/tiny-timing.png", "charts/tiny-tradeoff.png", "predictions/tiny.png"):
        with Image.open(reports / chart) as image:  # still a valid PNG, with the run in a text chunk
            image.load()
            assert image.text[RUN_ID_KEY] == run_id and image.width > 100
    cases = {case.get("name"): case for case in junit.iter("testcase") if case.get("classname") == "tiny"}
    assert {name for name in cases if not name.startswith("preprocessing/")} == {
        f"{row.artifact}/{row.runtime}/{row.device}/{row.precision}" for row in frame.itertuples()}
    assert all(len(cases[f"{row.artifact}/{row.runtime}/cpu/{row.precision}"]) == (row.status == "SKIP")
               for row in frame[frame.device == "cpu"].itertuples())  # a passed cell has no outcome element


def _perturb_onnx(workdir, artifact="onnx", factor=1.01, update_manifest=True):
    """Scale the largest initializer by `factor`: what a buggy conversion could have written. Returns its
    values before and after."""
    root = workdir / "artifacts"
    path = root / read_manifest(root).models["tiny"].artifacts[artifact].path
    model = onnx.load(str(path))
    target = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    before = numpy_helper.to_array(target)
    target.CopyFrom(numpy_helper.from_array((before * np.float32(factor)).astype(np.float32), target.name))
    onnx.save(model, str(path))
    if update_manifest:
        resign(root, artifact, model="tiny")
    after = next(numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer if t.name == target.name)
    return before, after


def test_one_percent_onnx_initializer_perturbation_fails_the_gate(workdir, capsys):
    before, after = _perturb_onnx(workdir)
    np.testing.assert_allclose(after, before * 1.01, rtol=1e-6)  # the file really holds the 1% change
    assert np.abs(after - before).max() > 0
    assert run(workdir) == 1
    frame = parity(workdir)
    assert status(frame, "onnx", "onnxruntime") == "FAIL"
    assert status(frame, "onnx_simplified", "onnxruntime") == "PASS"  # the other cells still run and pass
    assert status(frame, "paddle", "paddle-inference") == "PASS"
    assert "tiny/onnx/onnxruntime@cpu: FAIL" in capsys.readouterr().out
    junit = ElementTree.parse(workdir / "reports" / "junit.xml").getroot()
    failed = {case.get("name"): case[0] for case in junit.iter("testcase") if len(case) and case[0].tag == "failure"}
    assert sorted(failed) == ["onnx/onnxruntime/cpu/fp32", "onnx/openvino/cpu/fp32"]  # both runtimes of that file
    assert "FAIL" in failed["onnx/onnxruntime/cpu/fp32"].get("message")
    summary = json.loads((workdir / "reports" / "summary.json").read_text())
    assert summary["verdict"] == "BLOCKED (partial)" and summary["failing_cells"][0]["runtime"] == "onnxruntime"


def test_artifact_changed_after_conversion_is_an_error(workdir):
    _perturb_onnx(workdir, factor=1.0001, update_manifest=False)
    assert run(workdir) == 1
    row = parity(workdir).query("artifact == 'onnx' and device == 'cpu'").iloc[0]
    assert row.status == "ERROR" and "sha256 mismatch" in row.detail


def test_degenerate_reference_is_error_not_pass(workdir):
    assert run(workdir, models="flat") == 1
    frame = parity(workdir)
    assert "PASS" not in set(frame.status)
    assert "does not depend on the input" in frame.detail.iloc[0]
    summary = json.loads((workdir / "reports" / "summary.json").read_text())
    assert summary["blocking"] == [
        "flat: reference (torch eager, CPU): reference output does not depend on the input: every sample gives "
        "the same logits"]


class _Crashing(OnnxRuntimeRunner):
    def run(self, feeds):
        raise RuntimeError("segfault-like failure in the runtime")


class _NaN(OnnxRuntimeRunner):
    def run(self, feeds):
        out = super().run(feeds)
        out["logits"][0, 0] = np.nan
        return out


@pytest.mark.parametrize("runner,expected", [(_Crashing, "ERROR"), (_NaN, "FAIL")])
def test_broken_runtime_is_its_own_cell_and_the_others_run(workdir, runner, expected):
    assert verify_api(workdir, {"onnxruntime": runner}) == 1
    frame = parity(workdir)
    assert status(frame, "onnx", "onnxruntime") == expected
    assert status(frame, "onnx_simplified", "onnxruntime") == expected
    for artifact, runtime in [("eager", "torch"), ("torchscript", "torchscript"), ("paddle", "paddle-inference"),
                              ("paddle", "paddle-jit")]:
        assert status(frame, artifact, runtime) == "PASS"


def test_waiver_lets_a_known_failure_through_and_is_reported(workdir):
    zoo = yaml.safe_load((workdir / "zoo.yaml").read_text())
    zoo["models"][0]["allow_failures"] = [{"runtime": "onnxruntime", "reason": "ORT 1.32 crash, tracked in #7"}]
    (workdir / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    assert verify_api(workdir, {"onnxruntime": _Crashing}) == 0
    report = (workdir / "reports" / "report.md").read_text()
    assert "Waived by `allow_failures`" in report and "tracked in #7" in report


def test_required_gpu_runtime_that_skips_blocks(workdir):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the cell would run")
    zoo = yaml.safe_load((workdir / "zoo.yaml").read_text())
    zoo["models"][0]["required"] = ["torch@cuda"]
    (workdir / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    args = ["--artifacts", str(workdir / "artifacts"), "--report", str(workdir / "reports"), "--models", "tiny",
            "--zoo", str(workdir / "zoo.yaml"), "--no-timing", "--num-images", "2", "--runtimes", "torch"]
    assert verify_main(args) == 1  # no --devices: the devices present (the CPU), and the cell the zoo requires
    summary = json.loads((workdir / "reports" / "summary.json").read_text())
    assert any("torch@cuda: required but skipped" in line for line in summary["blocking"])
    devices = set(parity(workdir).device)
    assert devices == {"cpu", "cuda"}  # torch on the CPU and the required cuda cell; no other GPU rows


def test_zoo_tolerance_edit_applies_without_reconverting(workdir):
    zoo = yaml.safe_load((workdir / "zoo.yaml").read_text())
    zoo["models"][0]["tolerance"] = {"atol": 0.0, "rtol": 0.0}  # nothing but bit-exact passes
    (workdir / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    assert run(workdir) == 1
    assert status(parity(workdir), "onnx", "onnxruntime") == "FAIL"


def test_zoo_changed_since_conversion_is_reported(workdir):
    zoo = yaml.safe_load((workdir / "zoo.yaml").read_text())
    zoo["models"][0]["seed"] = 99
    (workdir / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    assert run(workdir) == 1
    summary = json.loads((workdir / "reports" / "summary.json").read_text())
    assert "changed since conversion (seed)" in summary["blocking"][0]
    assert set(parity(workdir).status) == {"ERROR"}  # every planned cell is shown, none ran


def test_formats_edit_is_not_stale(workdir):
    zoo = yaml.safe_load((workdir / "zoo.yaml").read_text())
    zoo["models"][0]["formats"] = ["eager", "onnx"]  # the converter would keep every artifact: so does verify
    (workdir / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    assert run(workdir) == 0


def test_bgr_deployment_preprocessing_blocks_without_reconverting(workdir, capsys):
    """Every runtime agrees on the shared tensor; only the preprocessing check sees the service's BGR."""
    zoo = yaml.safe_load((workdir / "zoo.yaml").read_text())
    zoo["models"][0]["deployments"] = [{"name": "opencv", "library": "opencv"},
                                       {"name": "cpp-service", "library": "opencv", "channel_order": "BGR"}]
    (workdir / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    assert run(workdir) == 1
    assert set(parity(workdir).query("device == 'cpu'").status) == {"PASS"}
    checks = pd.read_csv(workdir / "reports" / "preprocessing.csv").set_index("deployment")
    assert checks.loc["opencv"].status == "PASS" and checks.loc["opencv"].channel_shift < 0.05
    assert checks.loc["cpp-service"].status == "FAIL" and checks.loc["cpp-service"].channel_shift > 0.5
    assert "tiny/preprocessing:cpp-service: FAIL: an image's channel mean moved" in capsys.readouterr().out
    assert "| cpp-service | opencv | FAIL |" in (workdir / "reports" / "report.md").read_text()


def test_checkpoint_compared_by_content_not_path(workdir):
    assert run(workdir, models="flat") == 1  # (flat is degenerate, but not stale: its copy moved, unchanged)
    assert "changed since conversion" not in (workdir / "reports" / "summary.json").read_text()
    torch.save({k: v + 1 for k, v in torch.load(workdir / "flat.pt").items()}, workdir / "flat.pt")
    assert run(workdir, models="flat") == 1
    assert "checkpoint file content" in (workdir / "reports" / "summary.json").read_text()


def test_user_images_folder(workdir):
    from PIL import Image

    images = workdir / "images"
    images.mkdir()
    for index, size in enumerate([(300, 217), (64, 90)]):
        Image.new("RGB", size, (40 * index, 100, 200)).save(images / f"{index}.png")
    assert run(workdir, "--images", str(images)) == 0
    assert np.load(workdir / "reports" / "inputs" / "tiny.npz")["inputs"].shape[0] == 2


@pytest.mark.parametrize("args,fragment", [
    (["--artifacts", "{w}/nowhere"], "no manifest"),
    (["--models", "ghost"], "not in"),
    (["--images", "{w}/no-images"], "not a folder"),
    (["--devices", "tpu"], "unknown"),
    (["--runs", "2"], "at least 6"),
    (["--batches", "1,x"], "--batches"),
    (["--batches", "0"], "at least 1"),
])
def test_usage_errors_exit_2_with_one_line(workdir, capsys, args, fragment):
    base = ["--report", str(workdir / "reports"), "--artifacts", str(workdir / "artifacts"), "--no-timing"]
    code = verify_main(base + [a.format(w=workdir) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and fragment in err and "\n" not in err and "Traceback" not in err


def _compare_that_breaks_on_five_classes(reference, candidate, tolerance, kind="logits"):
    from verify.judge.compare import compare

    if reference.shape[-1] == 5:
        raise RuntimeError("a bug in the comparison")
    return compare(reference, candidate, tolerance, kind)


def test_library_api_keeps_the_other_models_when_one_breaks_and_prints_nothing(tmp_path, capsys):
    """An unexpected error inside one model makes that model an ERROR row; the finished results of the others
    are kept, the verdict blocks, the reports are written; the library prints nothing."""
    from verify.api import VerifyOptions, run, write_reports

    root = convert_tiny_zoo(tmp_path, [tiny_entry("ten", deployments=[]),
                                       tiny_entry("five", num_classes=5, deployments=[])])
    capsys.readouterr()
    verified = run(VerifyOptions(artifacts=root / "artifacts", devices=("cpu",), num_images=3, timing=False,
                                 partial=True), compare_func=_compare_that_breaks_on_five_classes)
    assert capsys.readouterr() == ("", "")
    by_model = {result.model: result for result in verified.results}
    assert by_model["five"].error == "unexpected RuntimeError: a bug in the comparison"
    assert {cell.status for cell in by_model["five"].cells} == {"ERROR"}
    assert len(by_model["five"].cells) == len(by_model["ten"].cells)  # every planned cell, as an ERROR
    assert by_model["ten"].error is None and {cell.status for cell in by_model["ten"].cells} == {"PASS"}
    assert verified.verdict.blocking == ("five: unexpected RuntimeError: a bug in the comparison",)
    write_reports(verified, root / "reports")
    frame = pd.read_csv(root / "reports" / "parity.csv")
    assert set(frame[frame.model == "ten"].status) == {"PASS"} and set(frame[frame.model == "five"].status) == {"ERROR"}


def test_a_two_headed_model_is_compared_output_by_output(tmp_path):
    """logits and an embedding: a 1% change to the embedding alone (the classifier's input scaled in the ONNX
    file, after the classifier read it) fails the cell on that output and names it."""
    root = convert_tiny_zoo(tmp_path, [tiny_entry("two", arch="tests.tiny_models:two_heads_cnn",
                                                  outputs=["logits", "embedding"], deployments=[])])
    record = read_manifest(root / "artifacts").models["two"]
    path = root / "artifacts" / record.artifacts["onnx"].path
    model = onnx.load(str(path))
    mul = next(node for node in model.graph.node if node.op_type == "Mul" and node.output[0] == "embedding")
    factor = next(node for node in model.graph.node if node.op_type == "Constant" and node.output[0] in mul.input)
    value = factor.attribute[0].t
    assert numpy_helper.to_array(value) == 2.0  # the embedding * 2.0 of TwoHeads
    value.CopyFrom(numpy_helper.from_array(np.asarray(2.02, np.float32), value.name))
    onnx.save(model, str(path))
    resign(root / "artifacts", "onnx", model="two")
    assert verify_api(root, models=("two",)) == 1
    frame = parity(root)
    onnx_rows = frame[(frame.artifact == "onnx") & (frame.runtime == "onnxruntime")].set_index("output")
    assert onnx_rows.loc["logits"].status == "PASS" and onnx_rows.loc["embedding"].status == "FAIL"
    assert set(onnx_rows.cell_status) == {"FAIL"}
    others = frame[frame.artifact != "onnx"]
    assert set(others.status) == {"PASS"} and set(others.output) == {"logits", "embedding"}
    summary = json.loads((root / "reports" / "summary.json").read_text())
    assert summary["blocking"][0].startswith("two/onnx/onnxruntime@cpu: FAIL: embedding: ")


def test_a_filtered_run_is_not_a_deployment_verdict_unless_asked_for(workdir, capsys):
    """--models, --runtimes and --devices narrow the run: without --partial it blocks and says what it left out;
    with it, it passes as a partial verdict that says so in the verdict line, the report and summary.json."""
    base = ["--artifacts", str(workdir / "artifacts"), "--report", str(workdir / "reports"), "--no-timing",
            "--num-images", "2", "--models", "tiny", "--runtimes", "onnxruntime", "--devices", "cpu"]
    assert verify_main(base) == 1
    out = capsys.readouterr().out
    assert "partial run: left out models flat; runtimes torch-bf16, torchscript, torch-export, paddle-inference, " \
           "paddle-inference-bf16, paddle-jit, paddle-dygraph, tensorrt, tvm, openvino, openvino-bf16; devices cuda, " \
           "tensorrt; this is not a deployment verdict" in out
    assert verify_main(base + ["--partial"]) == 0
    assert "PASS (partial): 0 blocking" in capsys.readouterr().out
    report = (workdir / "reports" / "report.md").read_text()
    assert report.startswith("# Parity report: PASS (partial)\n\n**Partial run**: left out models flat;")
    summary = json.loads((workdir / "reports" / "summary.json").read_text())
    assert summary["partial"] and summary["left_out"].startswith("models flat;")
    assert summary["provenance"]["command"].startswith("python -m verify --artifacts")
    assert summary["provenance"]["images"] == "2 synthetic images (seed 0)"
    assert "- images: 2 synthetic images (seed 0)" in report and "- commit: " in report


def test_inputs_that_barely_vary_make_the_model_an_error_not_a_pass(workdir):
    """Two distinct but nearly uniform images: every runtime would agree on them, and prove nothing."""
    from PIL import Image

    images = workdir / "flat-images"
    images.mkdir()
    Image.new("RGB", (40, 40), (100, 100, 100)).save(images / "a.png")
    Image.new("RGB", (40, 40), (100, 100, 101)).save(images / "b.png")
    assert run(workdir, "--images", str(images)) == 1
    summary = json.loads((workdir / "reports" / "summary.json").read_text())
    assert "the preprocessed inputs barely vary" in summary["models"]["tiny"]["error"]
    assert "PASS" not in set(parity(workdir).status)


def test_fixed_batch_artifacts_are_fed_one_sample_at_a_time(tmp_path):
    """onnx: {dynamic_batch: false} builds batch-1 ONNX (and Paddle) models, the route the converter suggests
    when x2paddle bakes the batch size in: the verifier's 4-image batch goes through them in slices."""
    root = convert_tiny_zoo(tmp_path, [tiny_entry("fixed", formats=["eager", "onnx"], deployments=[],
                                                  onnx={"dynamic_batch": False, "simplify": False})])
    record = read_manifest(root / "artifacts").models["fixed"]
    graph = onnx.load(str(root / "artifacts" / record.artifacts["onnx"].path)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1  # really a fixed batch of 1
    assert verify_api(root, models=("fixed",)) == 0
    frame = parity(root)
    cell = frame[frame.runtime == "onnxruntime"].iloc[0]
    assert cell.status == "PASS" and cell.samples == 4
