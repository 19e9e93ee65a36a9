"""Deployment preprocessing parity: the implementations, the pure judgement, the zoo fields, the gate."""
from __future__ import annotations

import numpy as np
import pytest

from converter.core.errors import ZooError
from converter.core.images import synthetic_images
from converter.zoo import Deployment, DeploymentTolerance, ModelEntry, Preprocess, load_zoo
from tests.conftest import tiny_entry
from verify.judge.gate import decide
from verify.judge.preprocessing import channel_shift, deployment_batch, reference_batch, settings_for
from verify.tasks.classification.scores import judge_deployment as judge
from verify.results import Cell, ModelResult, PreprocessingCheck

IMAGES = synthetic_images(6, seed=3)
SETTINGS = Preprocess()


def test_reference_transform_is_torchvision_and_pil_numpy_matches_it_exactly():
    reference = reference_batch(IMAGES, SETTINGS)
    assert reference.shape == (6, 3, 224, 224) and reference.dtype == np.float32
    pil_numpy = deployment_batch(IMAGES, Deployment(name="py", library="pil-numpy"), SETTINGS)
    np.testing.assert_allclose(pil_numpy, reference, atol=1e-6)


def test_opencv_resamples_differently_but_keeps_channel_statistics():
    reference = reference_batch(IMAGES, SETTINGS)
    opencv = deployment_batch(IMAGES, Deployment(name="cv", library="opencv"), SETTINGS)
    assert opencv.shape == reference.shape
    assert np.abs(opencv - reference).max() > 0.05  # no antialiasing: real pixel differences
    assert channel_shift(reference, opencv) < 0.02


@pytest.mark.parametrize("override", [{"channel_order": "BGR"}, {"mean": [0.5] * 3, "std": [0.5] * 3},
                                      {"resize": 240}])
def test_channel_order_normalisation_and_field_of_view_mistakes_move_channel_means(override):
    reference = reference_batch(IMAGES, SETTINGS)
    wrong = deployment_batch(IMAGES, Deployment(name="bad", library="opencv", **override), SETTINGS)
    assert channel_shift(reference, wrong) > DeploymentTolerance().max_channel_shift


def test_grayscale_and_bgr_models_follow_the_settings():
    gray = Preprocess(mean=[0.5], std=[0.25])
    assert reference_batch(IMAGES, gray).shape == (6, 1, 224, 224)
    opencv_gray = deployment_batch(IMAGES, Deployment(name="g", library="opencv"), gray)
    assert opencv_gray.shape == (6, 1, 224, 224) and channel_shift(reference_batch(IMAGES, gray), opencv_gray) < 0.02
    bgr_model = Preprocess(channel_order="BGR")
    reference = reference_batch(IMAGES, bgr_model)
    opencv = deployment_batch(IMAGES, Deployment(name="cv", library="opencv"), bgr_model)
    assert channel_shift(reference, opencv) < 0.02  # both feed this model BGR
    assert settings_for(Deployment(name="x", library="opencv", channel_order="RGB"), bgr_model).channel_order == "RGB"


def _logits(seed=0):
    return np.random.default_rng(seed).normal(size=(8, 5)).astype(np.float32)


def test_judge_passes_identical_inputs_and_reports_metrics():
    inputs, logits = np.zeros((8, 3, 4, 4), np.float32), _logits()
    result = judge(inputs, inputs, logits, logits, DeploymentTolerance())
    assert result.status == "PASS" and result.channel_shift == 0 and result.top1_agreement == 1.0


def test_judge_fails_on_channel_shift_on_confident_flips_and_on_nan():
    inputs, logits = np.zeros((8, 3, 4, 4), np.float32), _logits() * 4  # confident: top-1 well ahead
    shifted = inputs.copy()
    shifted[0, 2] += 0.3
    assert judge(inputs, shifted, logits, logits, DeploymentTolerance()).status == "FAIL"
    other = _logits(1) * 4
    flipped = judge(inputs, inputs, logits, other, DeploymentTolerance(top1=0.9))
    assert flipped.status == "FAIL" and "confident top-1 predictions changed" in flipped.detail
    assert flipped.confident_flips >= 2
    broken = logits.copy()
    broken[0, 0] = np.nan
    assert judge(inputs, inputs, logits, broken, DeploymentTolerance()).status == "FAIL"


def test_a_flip_between_near_tied_classes_does_not_count():
    """The reference scores classes 0 and 1 almost alike on every image; a deployment that tips each image to
    the other one flips every top-1 but changes no confident prediction (as resampling does on untrained nets)."""
    reference = np.tile(np.array([[1.0, 0.95, -3.0, -3.0]], np.float32), (8, 1))
    deployment = np.tile(np.array([[0.95, 1.0, -3.0, -3.0]], np.float32), (8, 1))
    inputs = np.zeros((8, 3, 4, 4), np.float32)
    result = judge(inputs, inputs, reference, deployment, DeploymentTolerance())
    assert result.status == "PASS" and result.top1_agreement == 0.0 and result.confident_flips == 0
    confident = np.tile(np.array([[4.0, 0.0, -3.0, -3.0]], np.float32), (8, 1))
    swapped = confident[:, [1, 0, 2, 3]]
    assert judge(inputs, inputs, confident, swapped, DeploymentTolerance()).confident_flips == 8


def test_zoo_deployments_default_to_information_and_gate_once_declared(write_zoo):
    entry = load_zoo(write_zoo([tiny_entry()])).models[0]
    deployments, gated = entry.deployment_checks
    assert [(d.name, d.library) for d in deployments] == [("pil-numpy", "pil-numpy"), ("opencv", "opencv")]
    assert not gated and entry.deployments is None
    declared = load_zoo(write_zoo([tiny_entry(deployments=[{"name": "opencv", "library": "opencv"}])])).models[0]
    assert [d.name for d in declared.deployment_checks[0]] == ["opencv"] and declared.deployment_checks[1]
    in_defaults = load_zoo(write_zoo([tiny_entry()], defaults={"deployments": [{"name": "cv", "library": "opencv"}]}))
    assert in_defaults.models[0].deployment_checks[1]  # declared in `defaults:` counts as declared
    for bad, field in (
        ({"deployments": [{"name": "a", "library": "opencv"}, {"name": "a", "library": "pil-numpy"}]}, "deployments"),
        ({"deployments": [{"name": "a", "library": "cv3"}]}, "deployments.0.library"),
        ({"deployments": [{"name": "a", "library": "opencv", "mean": [0.5]}]}, "deployments.0.mean"),
        ({"allow_failures": [{"preprocessing": "nope", "reason": "why not"}]}, "allow_failures.0.preprocessing"),
    ):
        with pytest.raises(ZooError) as info:
            load_zoo(write_zoo([tiny_entry(**bad)]))
        assert info.value.field == field, str(info.value)


def test_failing_preprocessing_blocks_unless_waived():
    entry = ModelEntry(name="m", arch="tests.tiny_models:tiny_cnn", weights="random")
    ref = Cell("m", "eager", "torch", "cpu", "PASS", "", reference=True)
    failing = PreprocessingCheck("m", "opencv", "opencv", "FAIL", "channel mean moved")
    verdict = decide([ModelResult("m", cells=[ref], preprocessing=[failing])], {"m": entry})
    assert verdict.exit_code == 1 and verdict.blocking == ("m/preprocessing:opencv: FAIL: channel mean moved",)
    waived_entry = ModelEntry(name="m", arch="tests.tiny_models:tiny_cnn", weights="random", allow_failures=[
        {"preprocessing": "opencv", "reason": "the service resizes on the client"}])
    verdict = decide([ModelResult("m", cells=[ref], preprocessing=[failing])], {"m": waived_entry})
    assert verdict.exit_code == 0 and "the service resizes on the client" in verdict.waived[0]


def _photograph():
    """A real photograph (JPEG, 512x600, portrait) that matplotlib, a pinned dependency, ships with its sample
    data: the generated test images are PNGs of smooth shapes, this is camera noise, texture and a JPEG."""
    import matplotlib.cbook

    return matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


def test_a_real_photograph_decodes_alike_and_keeps_the_deployments_in_tolerance():
    import cv2
    from PIL import Image

    path = _photograph()
    pil = np.asarray(Image.open(path).convert("RGB"))
    # opencv_batch starts from the PIL-decoded image: it stands for cv2.imread only while both decoders agree
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), pil)
    photos = [Image.open(path), Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    reference = reference_batch(photos, SETTINGS)
    np.testing.assert_allclose(deployment_batch(photos, Deployment(name="py", library="pil-numpy"), SETTINGS),
                               reference, atol=1e-6)
    opencv = deployment_batch(photos, Deployment(name="cv", library="opencv"), SETTINGS)
    assert channel_shift(reference, opencv) < DeploymentTolerance().max_channel_shift
    swapped = deployment_batch(photos, Deployment(name="bgr", library="opencv", channel_order="BGR"), SETTINGS)
    assert channel_shift(reference, swapped) > DeploymentTolerance().max_channel_shift
