"""python -m verify.predict and Predictor on a tiny converted model with class names, and the int8 and fp16
exports calibrated on an image folder."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from converter.manifest import read_manifest
from tests.conftest import convert_tiny_zoo, tiny_entry
from verify.predict import PredictError, Predictor, main as predict_main

NAMES = [f"class-{i}" for i in range(10)]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    calibration = root / "calibration"
    calibration.mkdir()
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        pixels = (rng.uniform(0, 255, (40, 48, 3))).astype(np.uint8)
        Image.fromarray(pixels).save(calibration / f"{index}.png")
        Image.fromarray(255 - pixels).save(images / f"{index}.png")
    (root / "names.txt").write_text("\n".join(NAMES) + "\n")
    convert_tiny_zoo(root, [tiny_entry(classes_file="names.txt", formats=["eager", "onnx", "onnx_fp16", "onnx_int8"],
                                       calibration={"images": "calibration", "max_images": 4})])
    return root


def test_the_int8_export_records_its_calibration_and_fp16_halves_the_file(converted):
    record = read_manifest(converted / "artifacts").models["tiny"]
    int8, fp16, fp32 = (record.artifacts[name] for name in ("onnx_int8", "onnx_fp16", "onnx"))
    assert int8.ok and fp16.ok
    assert int8.details["calibration"] == f"MinMax over 4 images from {converted / 'calibration'}"
    assert int8.details["ops"]["QuantizeLinear"] > 0 and int8.details["ops"]["DequantizeLinear"] > 0
    size = {name: sum(f.size for f in record.artifacts[name].files.values()) for name in ("onnx", "onnx_fp16")}
    assert size["onnx_fp16"] < 0.7 * size["onnx"]
    assert fp32.details["dynamic_batch"]


def test_predictor_names_classes_and_agrees_with_the_reference(converted):
    images = [Image.open(path).convert("RGB") for path in sorted((converted / "images").iterdir())]
    reference = Predictor(converted / "artifacts", runtime="torch")
    onnx = Predictor(converted / "artifacts", "tiny", runtime="onnxruntime", artifact="onnx")
    expected = reference.predict(images, topk=3, batch_size=4)
    got = onnx.predict(images, topk=3, batch_size=4)
    assert [row[0][0] for row in got] == [row[0][0] for row in expected]
    assert all(name in NAMES for row in got for name, _ in row)
    assert all(1 >= row[0][1] >= row[1][1] >= row[2][1] > 0 for row in got)
    timing = onnx.benchmark(images, batch_size=2, runs=5, warmup=1)
    assert timing.batch == 2 and timing.p50_ms > 0 and timing.throughput_ips > 0


def test_predict_command_prints_top_k_and_refuses_bad_choices(converted, capsys):
    artifacts = str(converted / "artifacts")
    assert predict_main([str(converted / "images" / "0.png"), "--artifacts", artifacts, "--artifact", "onnx_int8",
                         "--topk", "2", "--benchmark", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny: onnxruntime on onnx_int8 (cpu)")
    assert "0.png: 1. class-" in out and "  2. class-" in out and "benchmark: batch 2: p50" in out
    for argv, message in ((["--runtime", "tflite"], "unknown runtime 'tflite'"),
                          (["--artifact", "paddle"], "onnxruntime does not load 'paddle'"),
                          (["--runtime", "openvino", "--artifact", "openvino_ir"], "'openvino_ir' of model 'tiny' "
                                                                                   "was not built"),
                          (["--model", "other"], "'other' is not in")):
        assert predict_main([str(converted / "images"), "--artifacts", artifacts, *argv]) == 2
        assert message in capsys.readouterr().err
    assert predict_main([str(converted / "missing.png"), "--artifacts", artifacts]) == 2
    assert "no such image file or folder" in capsys.readouterr().err


def test_a_changed_artifact_is_refused_before_it_is_loaded(converted, tmp_path):
    import shutil

    shutil.copytree(converted / "artifacts", tmp_path / "artifacts")
    record = read_manifest(tmp_path / "artifacts").models["tiny"]
    path = tmp_path / "artifacts" / record.artifacts["onnx"].path
    path.write_bytes(path.read_bytes()[:-8] + b"12345678")
    with pytest.raises(PredictError, match="tiny/onnx: "):
        Predictor(tmp_path / "artifacts", "tiny", artifact="onnx")


def test_predict_reads_a_real_jpeg_photograph(converted, capsys):
    import matplotlib.cbook

    photo = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    assert predict_main([str(photo), "--artifacts", str(converted / "artifacts"), "--runtime", "onnxruntime",
                         "--artifact", "onnx", "--topk", "3"]) == 0
    out = capsys.readouterr().out
    expected = Predictor(converted / "artifacts", runtime="torch").predict([Image.open(photo)], topk=3)[0]
    assert f"grace_hopper.jpg: 1. {expected[0][0]}" in out and f"  3. {expected[2][0]}" in out, out
