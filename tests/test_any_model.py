"""Models that are not single-image classifiers: named inputs of every kind, dynamic axes verified at several sizes
(a shape sweep), outputs by kind, dict outputs, and the declarations the zoo refuses."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from tests.conftest import verify_api
from converter.core.errors import ModelLoadError, ZooError
from converter.core.outputs import leaves, named_outputs
from converter.core.samples import sample_feeds
from converter.models import build_model, check_declaration
from converter.zoo import ModelEntry, Tolerance, load_zoo
from verify.judge.kinds import OutputKind

TEXT = {"name": "text", "arch": "tests.any_models:text_classifier", "weights": "random",
        "inputs": [{"name": "input_ids", "kind": "tokens", "shape": ["batch", "sequence"], "vocab": 100},
                   {"name": "attention_mask", "kind": "mask", "of": "input_ids", "shape": ["batch", "sequence"]}],
        "dynamic": {"sequence": [16, 8, 40]}}
SMALL_IMAGE = {"preprocess": {"resize": 36, "crop": 32}}


def entry(**fields) -> ModelEntry:
    return ModelEntry.model_validate({**TEXT, **fields})


@pytest.mark.parametrize("change,field,fragment", [
    ({"dynamic": {"sequence": [8], "height": [4]}}, "dynamic.height", "no input has an axis named 'height'"),
    ({"dynamic": {}}, "inputs.0.shape", "axis 'sequence' has no sizes"),
    ({"dynamic": {"sequence": [8], "batch": [2]}}, "dynamic.batch", "batch axis is always varied"),
    ({"inputs": [{"name": "x", "kind": "tokens", "shape": ["sequence", "batch"], "vocab": 5}]}, "inputs.0.shape",
     "first axis must be 'batch'"),
    ({"inputs": [{"name": "x", "kind": "tokens", "shape": ["batch", "sequence"]}]}, "inputs.0.vocab",
     "vocabulary size"),
    ({"inputs": [{"name": "x", "kind": "tokens", "shape": ["batch", "sequence"], "vocab": 5},
                 {"name": "m", "kind": "mask", "of": "y", "shape": ["batch", "sequence"]}]}, "inputs.1.of",
     "names the tokens input"),
    ({"inputs": [{"name": "x", "kind": "audio", "shape": ["batch", "sequence"]}]}, "inputs.0.kind",
     "unknown input kind 'audio'"),
    ({"inputs": [{"name": "x", "kind": "image", "shape": ["batch", "channels", "sequence", "sequence"]}],
      "dynamic": {"sequence": [224], "channels": [3]}}, "inputs.0.shape", "channels"),
    ({"outputs": [{"name": "logits", "kind": "polygons"}]}, "outputs.0.kind", "unknown output kind 'polygons'"),
    ({"outputs": [{"name": "boxes", "kind": "boxes"}, {"name": "scores", "kind": "scores"}]}, "outputs",
     "compared together with boxes, scores, labels: declare each of them once"),
    ({"outputs": ["input_ids"]}, "outputs.0", "also an input's name"),
    ({"images": "."}, "images", "no image input"),
    ({"fixed_shape": ["onnx"], "inputs": [{"name": "x", "kind": "tokens", "shape": ["batch", 8], "vocab": 5}],
      "dynamic": {}}, "fixed_shape", "no dynamic axis"),
    ({"fixed_shape": ["onnx", "tensorflow"]}, "fixed_shape.1", "unknown format 'tensorflow'"),
])
def test_a_bad_declaration_is_one_line_naming_the_model_and_the_field(write_zoo, change, field, fragment):
    path = write_zoo([{**TEXT, **change}])
    with pytest.raises(ZooError) as caught:
        load_zoo(path)
    assert caught.value.field == field and caught.value.model == "text" and fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_file_of_samples_must_match_its_input(tmp_path, write_zoo):
    np.save(tmp_path / "meta.npy", np.zeros((3, 5), np.float32))
    spec = {"name": "meta", "shape": ["batch", 6], "file": "meta.npy"}
    with pytest.raises(ZooError, match=r"samples of shape \[5\]") as caught:
        load_zoo(write_zoo([{**TEXT, "inputs": [spec], "dynamic": {}}]))
    assert caught.value.field == "inputs.0.file"


def test_samples_of_each_kind_are_seeded_in_range_and_padding_is_exercised(tmp_path):
    feeds = sample_feeds(entry(), 6, seed=0, point={"sequence": 12})
    assert list(feeds) == ["input_ids", "attention_mask"] and feeds["input_ids"].dtype == np.int64
    assert feeds["input_ids"].shape == (6, 12) and 0 <= feeds["input_ids"].min() and feeds["input_ids"].max() < 100
    mask = feeds["attention_mask"]
    assert mask[0].all() and not mask[1:, -1].any() and mask[:, 0].all()  # the first unpadded, the others padded
    assert all((np.diff(row) <= 0).all() for row in mask)  # ones, then a tail of zeros
    again = sample_feeds(entry(), 6, seed=0, point={"sequence": 12})
    assert all(np.array_equal(feeds[name], again[name]) for name in feeds)
    np.savez(tmp_path / "real.npz", meta=np.arange(12, dtype=np.float32).reshape(3, 4))
    real = ModelEntry.model_validate({**TEXT, "dynamic": {}, "inputs": [
        {"name": "meta", "shape": ["batch", 4], "file": str(tmp_path / "real.npz")},
        {"name": "steps", "shape": ["batch", 2], "dtype": "int32", "low": 3, "high": 5}]})
    made = sample_feeds(real, 5, seed=1)
    assert np.array_equal(made["meta"][3], made["meta"][0])  # the file's 3 samples, repeated in order
    assert made["steps"].dtype == np.int32 and set(np.unique(made["steps"])) <= {3, 4}


def test_nested_outputs_are_flattened_in_the_documented_order():
    value = {"logits": np.ones(2), "aux": (np.zeros(1), {"depth": np.ones(3)})}
    assert [name for name, _ in leaves(value)] == ["logits", "aux.0", "aux.1.depth"]
    named = named_outputs(value, ["a", "b", "c"])
    assert list(named) == ["a", "b", "c"] and named["c"].shape == (3,)
    assert list(named_outputs(value, ["aux.1.depth", "aux.0", "logits"])) == ["aux.1.depth", "aux.0", "logits"]


@pytest.mark.parametrize("fields,fragment", [
    ({"inputs": [TEXT["inputs"][0]]}, "declares 1 input(s) (input_ids); forward takes input_ids, attention_mask"),
    ({"inputs": [TEXT["inputs"][1], TEXT["inputs"][0]]}, "forward takes input_ids, attention_mask, in that order"),
    ({"inputs": [{**TEXT["inputs"][0], "vocab": 5000}, TEXT["inputs"][1]]},
     "inputs.0.vocab: ids up to 4999, but the model's largest embedding has 100 rows"),
    ({"outputs": ["logits", "embedding"]}, "outputs: the model returned 1 output(s), the zoo declares 2"),
])
def test_the_model_itself_is_checked_against_its_declaration_before_any_export(fields, fragment):
    declared = entry(**fields)
    with pytest.raises(ModelLoadError) as caught:
        check_declaration(declared, build_model(declared).module)
    assert fragment in str(caught.value)


MODELS = [
    {**TEXT, "formats": ["eager", "torchscript", "onnx", "onnx_dynamo", "torch_export", "openvino"],
     "onnx": {"simplify": False}},
    {"name": "baked", "arch": "tests.any_models:baked_size", "weights": "random", **SMALL_IMAGE,
     "inputs": [{"name": "image", "kind": "image", "shape": ["batch", 3, "height", "width"]}],
     "dynamic": {"height": [32, 48], "width": [32, 40]}, "formats": ["eager", "onnx"], "onnx": {"simplify": False}},
    {"name": "fixed", "arch": "tests.any_models:baked_size", "weights": "random", **SMALL_IMAGE,
     "inputs": [{"name": "image", "kind": "image", "shape": ["batch", 3, "height", "width"]}],
     "dynamic": {"height": [32, 48], "width": [32, 40]}, "fixed_shape": ["onnx"], "formats": ["eager", "onnx"],
     "onnx": {"simplify": False}},
    {"name": "fcn", "arch": "tests.any_models:fully_convolutional", "weights": "random", **SMALL_IMAGE,
     "inputs": [{"name": "image", "kind": "image", "shape": ["batch", 3, "height", "width"]}],
     "dynamic": {"height": [32, 48, 40], "width": [32, 40, 56]}, "outputs": [{"name": "masks", "kind": "regression"}],
     "formats": ["eager", "onnx_dynamo"], "onnx": {"simplify": False}},
    {"name": "two", "arch": "tests.any_models:image_and_metadata", "weights": "random", **SMALL_IMAGE,
     "inputs": [{"name": "image", "kind": "image", "shape": ["batch", 3, 32, 32]},
                {"name": "metadata", "shape": ["batch", 6], "distribution": "uniform", "low": -1, "high": 1}],
     "formats": ["eager", "onnx"], "onnx": {"simplify": False}},
    {"name": "embed", "arch": "tests.any_models:embedding_and_logits", "weights": "random", **SMALL_IMAGE,
     "input": {"shape": [3, 32, 32]}, "formats": ["eager", "openvino"],
     "outputs": [{"name": "embedding", "kind": "embedding", "tolerance": {"atol": 2e-4}}, "logits"]},
]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The models above converted and verified once (parity only, ONNX Runtime, OpenVINO and the torch runtimes)."""
    from converter.pipeline import RunOptions, convert

    root = tmp_path_factory.mktemp("any")
    (root / "zoo.yaml").write_text(yaml.safe_dump({"models": MODELS}, sort_keys=False))
    manifest = convert(load_zoo(root / "zoo.yaml"), RunOptions(out=root / "artifacts"))
    code = verify_api(root, models=None, num_images=8,
                      runtimes=("torch", "torchscript", "torch-export", "onnxruntime", "openvino"))
    rows = list(csv.DictReader(open(root / "reports" / "parity.csv")))
    return root, manifest, code, rows


def _rows(rows, model, artifact, runtime):
    return {row["output"]: row for row in rows
            if (row["model"], row["artifact"], row["runtime"]) == (model, artifact, runtime)}


def test_a_text_classifier_is_verified_at_every_sequence_length_and_the_legacy_export_fails_off_its_own(swept):
    root, manifest, code, rows = swept
    assert manifest.models["text"].artifacts["onnx_dynamo"].details["dynamic_axes"] == {
        "input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    sizes = ["logits @ sequence=16", "logits @ sequence=8", "logits @ sequence=40"]
    for artifact, runtime in (("torchscript", "torchscript"), ("exported_program", "torch-export"),
                              ("onnx_dynamo", "onnxruntime"), ("onnx_dynamo", "openvino"),
                              ("openvino_ir", "openvino")):
        found = _rows(rows, "text", artifact, runtime)
        assert list(found) == sizes and {row["status"] for row in found.values()} == {"PASS"}, (artifact, found)
        assert float(found["logits @ sequence=40"]["max_abs_diff"]) < 1e-4
    # the TorchScript-based exporter writes the traced length into the attention's Reshape: right at 16 only
    legacy = _rows(rows, "text", "onnx", "onnxruntime")
    assert list(legacy) == sizes and [legacy[size]["status"] for size in sizes] == ["PASS", "FAIL", "FAIL"]
    assert "Reshape node '/encoder/layers.0/self_attn/Reshape" in legacy["logits @ sequence=8"]["detail"]
    assert code == 1


def test_a_model_that_bakes_its_export_size_passes_there_and_fails_elsewhere_naming_the_size(swept):
    _, _, _, rows = swept
    found = _rows(rows, "baked", "onnx", "onnxruntime")
    assert found["logits @ height=32,width=32"]["status"] == "PASS"
    failed = found["logits @ height=48,width=40"]
    assert failed["status"] == "FAIL" and "its Reshape node '/Reshape' failed" in failed["detail"]


def test_a_format_the_zoo_fixes_at_the_export_size_is_skipped_at_the_other_sizes(swept):
    _, manifest, _, rows = swept
    assert manifest.models["fixed"].artifacts["onnx"].details["dynamic_axes"] == {"image": ["batch"]}
    found = _rows(rows, "fixed", "onnx", "onnxruntime")
    assert found["logits @ height=32,width=32"]["status"] == "PASS"
    skipped = found["logits @ height=48,width=40"]
    assert skipped["status"] == "SKIP" and "builds onnx at the export size only (fixed_shape)" in skipped["detail"]
    assert {row["cell_status"] for row in found.values()} == {"PASS"}


def test_a_fully_convolutional_net_and_a_two_input_model_pass_at_every_size(swept):
    root, _, _, rows = swept
    fcn = _rows(rows, "fcn", "onnx_dynamo", "onnxruntime")
    assert list(fcn) == ["masks @ height=32,width=32", "masks @ height=48,width=40", "masks @ height=40,width=56"]
    assert {row["status"] for row in fcn.values()} == {"PASS"}
    two = _rows(rows, "two", "onnx", "onnxruntime")
    assert list(two) == ["logits"] and two["logits"]["status"] == "PASS"
    saved = np.load(root / "reports" / "inputs" / "two.npz")
    assert saved["image"].shape == (8, 3, 32, 32) and saved["metadata"].shape == (8, 6)
    assert -1 <= saved["metadata"].min() and saved["metadata"].max() <= 1


def test_a_dict_of_an_embedding_and_logits_is_compared_by_kind(swept):
    root, _, _, rows = swept
    found = _rows(rows, "embed", "openvino_ir", "openvino")
    assert list(found) == ["logits", "embedding"] and {row["status"] for row in found.values()} == {"PASS"}
    assert found["logits"]["top1_agreement"] == "1.0" and found["embedding"]["top1_agreement"] == ""
    summary = json.loads((root / "reports" / "summary.json").read_text())
    assert summary["models"]["embed"]["outputs"] == ["logits", "embedding"]


TOY = OutputKind("unit-scores", bounds=(-1.0, 1.0), noun="scores")  # a kind of this test module's own


def test_a_new_output_kind_is_one_definition_and_one_registration(write_zoo):
    """A kind of one's own plugs in without touching the session, the gate, the report or the CLI: the zoo accepts
    it by name and the comparison applies its checks."""
    from converter.core.vocabulary import OUTPUT_KINDS, OutputKindSpec
    from verify.judge.compare import compare_outputs

    OUTPUT_KINDS.register("unit-scores", OutputKindSpec("unit-scores", "tests.test_any_model:TOY", "scores in -1..1"))
    try:
        loaded = load_zoo(write_zoo([{**TEXT, "outputs": [{"name": "score", "kind": "unit-scores"}]}])).models[0]
        assert loaded.output_kinds == {"score": "unit-scores"} and loaded.logits is None
        reference = {"score": np.tanh(np.random.default_rng(0).normal(size=(4, 3)))}
        same = compare_outputs(reference, reference, {"score": loaded.tolerance}, loaded.output_kinds)
        assert same["score"].status == "PASS"
        doubled = compare_outputs({"score": reference["score"] * 2}, reference, {"score": loaded.tolerance},
                                  loaded.output_kinds)
        assert doubled["score"].status == "ERROR" and "declared unit-scores has values outside -1-1" in \
            doubled["score"].reason
    finally:
        OUTPUT_KINDS.unregister("unit-scores")


def test_a_rerun_from_the_cell_cache_keeps_every_size_and_its_failures(swept):
    root, _, code, rows = swept
    again = verify_api(root, models=None, num_images=8,
                       runtimes=("torch", "torchscript", "torch-export", "onnxruntime", "openvino"))
    rerun = list(csv.DictReader(open(root / "reports" / "parity.csv")))
    key = ("model", "artifact", "runtime", "output", "status", "max_abs_diff")
    assert again == code and [tuple(r[k] for k in key) for r in rerun] == [tuple(r[k] for k in key) for r in rows]


def test_integer_and_boolean_outputs_are_compared_as_numbers():
    from verify.judge.compare import compare

    flags = np.array([[True, False, True], [False, False, True], [True, True, False]])
    assert compare(flags, flags.copy(), Tolerance(), kind="regression").status == "PASS"
    flipped = flags.copy()
    flipped[1, 0] = True
    assert compare(flags, flipped, Tolerance(), kind="regression").status == "FAIL"
