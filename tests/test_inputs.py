"""The one preprocessing against torchvision's own transforms; image loading and the synthetic set."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from converter.zoo import Preprocess
from verify.plan.inputs import InputError, load_images, preprocess, synthetic_images

SETTINGS = [
    Preprocess(),
    Preprocess(resize=342, crop=299, interpolation="bicubic"),
    Preprocess(resize=40, crop=32, interpolation="nearest", mean=[0.5, 0.5, 0.5], std=[0.5, 0.25, 0.125]),
    Preprocess(resize=224, crop=224),
]


def torchvision_reference(image: Image.Image, settings: Preprocess) -> np.ndarray:
    pipeline = transforms.Compose([
        transforms.Resize(settings.resize, interpolation=InterpolationMode(settings.interpolation)),
        transforms.CenterCrop(settings.crop),
        transforms.ToTensor(),
        transforms.Normalize(settings.mean, settings.std),
    ])
    return pipeline(image).numpy()


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s.resize}-{s.crop}-{s.interpolation}")
def test_preprocess_matches_torchvision(settings):
    images = synthetic_images(8).images  # odd sizes, both orientations
    ours = preprocess(images, settings)
    expected = np.stack([torchvision_reference(image, settings) for image in images])
    assert ours.dtype == np.float32 and ours.shape == (8, 3, settings.crop, settings.crop)
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_bgr_reverses_channels_and_uses_mean_in_model_order():
    images = synthetic_images(2).images
    rgb = preprocess(images, Preprocess(mean=[0.1, 0.2, 0.3], std=[0.3, 0.2, 0.1]))
    bgr = preprocess(images, Preprocess(mean=[0.3, 0.2, 0.1], std=[0.1, 0.2, 0.3], channel_order="BGR"))
    np.testing.assert_allclose(bgr, rgb[:, ::-1], atol=1e-6)


def test_grayscale_model_gets_one_channel_of_luma():
    images = synthetic_images(2).images
    ours = preprocess(images, Preprocess(mean=[0.5], std=[0.25]))
    pipeline = transforms.Compose([transforms.Grayscale(), transforms.Resize(256), transforms.CenterCrop(224),
                                   transforms.ToTensor(), transforms.Normalize([0.5], [0.25])])
    expected = np.stack([pipeline(image).numpy() for image in images])
    assert ours.shape == (2, 1, 224, 224)
    np.testing.assert_allclose(ours, expected, atol=0.03)  # PIL rounds luma to uint8 before resizing


def test_synthetic_images_are_deterministic_and_natural_looking():
    first, again, other = synthetic_images(4, seed=0), synthetic_images(4, seed=0), synthetic_images(4, seed=1)
    for a, b in zip(first.images, again.images):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(other.images[0]))
    sizes = {image.size for image in first.images}
    assert len(sizes) == 4 and any(w % 8 or h % 8 for w, h in sizes)
    pixels = np.asarray(first.images[0], np.float32)[..., 0]
    # neighbouring pixels are strongly correlated (white noise would give ~0)
    correlation = np.corrcoef(pixels[:, :-1].ravel(), pixels[:, 1:].ravel())[0, 1]
    assert correlation > 0.8


def test_load_images_converts_modes_and_skips_corrupt_files(tmp_path, caplog):
    Image.new("RGB", (50, 40), (255, 0, 0)).save(tmp_path / "a_rgb.jpg")
    Image.new("L", (30, 60), 128).save(tmp_path / "b_gray.png")
    Image.new("RGBA", (20, 20), (0, 255, 0, 0)).save(tmp_path / "c_transparent.png")
    (tmp_path / "d_corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    loaded = load_images(tmp_path)
    assert loaded.names == ["a_rgb.jpg", "b_gray.png", "c_transparent.png"]
    assert all(image.mode == "RGB" for image in loaded.images)
    assert np.asarray(loaded.images[1])[0, 0].tolist() == [128, 128, 128]
    assert np.asarray(loaded.images[2])[0, 0].tolist() == [0, 0, 0]  # fully transparent: composited on black
    assert "d_corrupt.jpg" in caplog.text


def test_load_images_errors(tmp_path):
    with pytest.raises(InputError, match="no images"):
        load_images(tmp_path)
    (tmp_path / "x.png").write_bytes(b"garbage")
    with pytest.raises(InputError, match="none of the 1 image files could be read"):
        load_images(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        load_images(tmp_path / "missing")


def _png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (the pixel data is a stub: PIL refuses it on open)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_skipped_with_a_warning_not_a_traceback(tmp_path, caplog):
    """A 30000x30000 image (900 Mpx, over twice PIL's limit) in the folder: that file is skipped, the rest load."""
    (tmp_path / "huge.png").write_bytes(_png_header_claiming(30000, 30000))
    Image.new("RGB", (50, 40), (255, 0, 0)).save(tmp_path / "ok.png")
    loaded = load_images(tmp_path)
    assert loaded.names == ["ok.png"]
    assert "skipping" in caplog.text and "huge.png" in caplog.text and "too large" in caplog.text


def test_an_image_folder_with_class_subfolders_is_labelled(tmp_path):
    from verify.plan.inputs import label_indices

    for label, colour in (("ants", (90, 40, 20)), ("bees", (240, 200, 0))):
        (tmp_path / label).mkdir()
        for index in range(2):
            Image.new("RGB", (40, 30), tuple(c + index for c in colour)).save(tmp_path / label / f"{index}.png")
    (tmp_path / ".hidden").mkdir()
    loaded = load_images(tmp_path)
    assert loaded.labelled and loaded.labels == ["ants", "ants", "bees", "bees"]
    assert loaded.names == ["ants/0.png", "ants/1.png", "bees/0.png", "bees/1.png"]
    assert "in 2 labelled classes" in loaded.source
    assert label_indices(loaded, ["bees", "ants", "wasps"], "m") == [1, 1, 0, 0]
    assert label_indices(loaded, None, "m") is None  # a model without class names: no accuracy
    with pytest.raises(InputError, match="model 'm': class folder\\(s\\) bees match none of its classes"):
        label_indices(loaded, ["ants", "wasps"], "m")
    flat = tmp_path / "ants"
    assert load_images(flat).labels is None  # a flat folder keeps today's behaviour
