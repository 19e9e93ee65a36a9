"""TVM: the library compiled from the ONNX model for this CPU (untuned, the target and build time recorded), its
runner, the refusal of a library built for another CPU, and the SKIP where apache-tvm is not installed."""
from __future__ import annotations

import json

import pytest

from converter.exporters.tvm_library import unavailable_here
from tests.conftest import built_artifact, loaded_on_any_batch, convert_tiny_zoo, tiny_entry
from verify.runners.base import Availability, LoadRequest, RunnerError
from verify.runners.tvm_runner import TvmRunner

pytest.importorskip("tvm")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_tiny_zoo(tmp_path_factory.mktemp("tvm"), [tiny_entry(formats=["eager", "tvm"],
                                                                        onnx={"simplify": False})])


def _library(root):
    return built_artifact(root, "tvm")


def test_the_library_is_built_for_this_cpu_untuned_and_says_so(converted):
    from tvm.target import codegen

    path, record = _library(converted)
    assert path.name == "model.so"
    build = json.loads(path.with_name("build.json").read_text())
    assert build["target"] == {"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())}
    assert build["tuned"] is False and build["build_seconds"] > 0
    assert record.details["tvm_max_abs_diff"] < 1e-4
    assert record.details["dynamic_axes"] == {"input": ["batch"]}  # the ONNX model's named batch, kept symbolic


def test_the_runner_takes_any_batch_and_describes_the_build(converted):
    path, _ = _library(converted)
    runner = loaded_on_any_batch(TvmRunner, path)
    config = runner.describe()
    assert config["tuned"] is False and config["target"].startswith("llvm -mcpu=") and config["precision"] == "fp32"


def test_a_library_built_for_another_cpu_is_refused(converted, tmp_path):
    import shutil

    path, _ = _library(converted)
    copy = tmp_path / "lib"
    shutil.copytree(path.parent, copy)
    build = json.loads((copy / "build.json").read_text())
    build["target"]["mcpu"] = "some-other-cpu"
    (copy / "build.json").write_text(json.dumps(build))
    with pytest.raises(RunnerError, match="compiled for -mcpu=some-other-cpu"):
        TvmRunner().load(LoadRequest(copy / "model.so", "cpu", 1, ("input",), ("logits",)))


def test_without_apache_tvm_the_artifact_and_the_cells_are_skipped_with_the_reason(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tvm" else real(name, *a))
    assert "pip install '.[tvm]'" in unavailable_here()
    assert "not installed" in TvmRunner.unavailable("cpu", Availability(tvm_cpu=False))
    assert TvmRunner.unavailable("cpu", Availability(tvm_cpu=True)) is None


def test_the_report_says_localisation_does_not_apply_to_a_compiled_library(tmp_path):
    from verify.judge.compare import ELEMENTWISE, Comparison
    from verify.results import Cell
    from verify.cells.session import _localize

    failing = Cell("m", "tvm", "tvm", "cpu", "FAIL", "", comparisons={
        "logits": Comparison("FAIL", "drift", failed_checks=(ELEMENTWISE,))})
    found = _localize(failing, None, tmp_path, tmp_path / "model.so", None, False, None)
    assert not found.available and "does not apply to tvm" in found.summary and "(onnx)" in found.summary
