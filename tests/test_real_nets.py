"""Real torchvision networks through the converter (slow): the failures users meet are recorded, the
rest is built."""
from __future__ import annotations

import pytest

from converter.pipeline import RunOptions, convert_zoo
from converter.zoo import load_zoo

pytestmark = pytest.mark.slow


def test_real_nets_convert_and_known_failures_are_recorded(write_zoo, tmp_path):
    zoo = load_zoo(write_zoo(models=[
        {"name": "mobilenet", "arch": "torchvision:mobilenet_v3_small", "weights": "random"},
        {"name": "swin", "arch": "torchvision:swin_t", "weights": "random", "formats": ["eager", "paddle"],
         "calibration": {"batches": 1, "batch_size": 2}},
        {"name": "vit", "arch": "torchvision:vit_b_16", "weights": "random", "formats": ["eager", "torchscript"],
         "calibration": {"batches": 1, "batch_size": 2}},
    ]))
    manifest = convert_zoo(zoo, RunOptions(out=tmp_path / "artifacts"))
    mobilenet = manifest.models["mobilenet"].artifacts
    assert all(record.ok for record in mobilenet.values()), {k: v.error for k, v in mobilenet.items()}
    swin, vit = manifest.models["swin"].artifacts, manifest.models["vit"].artifacts
    assert swin["eager"].ok and not swin["paddle"].ok
    assert "not supported" in swin["paddle"].error
    assert vit["eager"].ok and not vit["torchscript"].ok
    assert "TracingCheckError" in vit["torchscript"].error
