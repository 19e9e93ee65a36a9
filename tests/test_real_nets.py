"""Real torchvision networks through the converter (slow): the failures users meet are recorded, the
rest is built."""
from __future__ import annotations

import pytest

from converter.pipeline import RunOptions, convert
from converter.zoo import load_zoo

pytestmark = pytest.mark.slow


def test_real_nets_convert_and_known_failures_are_recorded(write_zoo, tmp_path):
    zoo = load_zoo(write_zoo(models=[
        {"name": "mobilenet", "arch": "torchvision:mobilenet_v3_small", "weights": "random"},
        {"name": "swin", "arch": "torchvision:swin_t", "weights": "random", "formats": ["eager", "paddle"],
         "calibration": {"batches": 1, "batch_size": 2}},
    ]))
    manifest = convert(zoo, RunOptions(out=tmp_path / "artifacts"))
    mobilenet = manifest.models["mobilenet"].artifacts
    # every format builds but a TensorRT engine on a machine without a GPU, which is skipped with the reason
    assert all(record.ok or (name.startswith("tensorrt_engine") and record.skipped)
               for name, record in mobilenet.items()), \
        {k: v.error for k, v in mobilenet.items()}
    swin = manifest.models["swin"].artifacts
    # x2paddle's tracer has no aten::fill_ / aten::new_zeros: its ONNX front end builds swin_t instead
    assert swin["eager"].ok and swin["paddle"].ok and swin["paddle"].details["route"] == "onnx"
    assert "aten::fill_, aten::new_zeros" in swin["paddle"].details["direct_route_error"]


def test_localisation_names_a_perturbed_conv_inside_a_resnet_block(write_zoo, tmp_path):
    """Nested scopes (layer2/layer2.0/conv2), Conv+BatchNorm folding and a ReLU module called twice per block."""
    import numpy as np
    import onnx

    from converter.core.reference import load_reference
    from converter.zoo import Tolerance
    from verify.cells.localize import capture_module_calls, locate_in_onnx
    from verify.selftest.faults import scale_conv_weight

    zoo = load_zoo(write_zoo(models=[{"name": "resnet", "arch": "torchvision:resnet18", "weights": "random",
                                      "formats": ["eager", "onnx"], "onnx": {"simplify": False}}]))
    root = tmp_path / "artifacts"
    record = convert(zoo, RunOptions(out=root)).models["resnet"]
    path = root / record.artifacts["onnx"].path
    model = onnx.load(str(path))
    scale_conv_weight(model, "/layer2/layer2.0/conv2/Conv", 1.01)
    onnx.save(model, str(path))

    batch = np.random.default_rng(0).normal(size=(2, 3, 224, 224)).astype(np.float32)
    calls = capture_module_calls(load_reference((root / record.artifacts["eager"].path).parent), batch)
    found = locate_in_onnx(path, batch, calls, Tolerance(atol=1e-4, rtol=1e-3))
    assert found.layer == "/layer2/layer2.0/conv2/Conv" and found.module == "layer2.0.conv2", found.summary
    assert found.compared_with == "layer2.0.bn2" and found.layers_compared >= 10
