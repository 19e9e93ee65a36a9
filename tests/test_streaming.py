"""A folder of any size streams: preprocessed once into a file, read by each worker a chunk at a time."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from converter.core.isolation import Limits, run_isolated
from converter.zoo import InputSpec, ModelEntry, Preprocess
from verify.plan.inputs import CHUNK, load_images, preprocess, synthetic_images, write_input_file
from verify.runners import LoadRequest, Runner
from verify.cells.session import PARITY_BATCH, CellJob, run_cell_job, worst_samples
from verify.cells.timing import TimingPolicy

SETTINGS = Preprocess(resize=40, crop=32)


def _entry(settings: Preprocess = SETTINGS) -> ModelEntry:
    return ModelEntry(name="m", arch="torchvision:resnet18", weights="random", preprocess=settings,
                      input=InputSpec(shape=[3, settings.crop, settings.crop]))


def _folder(tmp_path, count: int):
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 256, (30 + index % 7, 44, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{index:04d}.png")
    return load_images(tmp_path)


def test_a_folder_is_read_from_its_files_not_held(tmp_path):
    images = _folder(tmp_path, 5)
    assert images.kept is None and len(images.paths) == 5
    assert np.array_equal(np.asarray(images.image(3)), np.asarray(Image.open(tmp_path / "0003.png").convert("RGB")))
    assert [np.asarray(image).shape for image in images[1:3]] == [(31, 44, 3), (32, 44, 3)]  # read when sliced
    assert images.distinct is True  # found out while the files were first read, not by reading them again


def test_a_folder_of_one_image_repeated_is_not_distinct(tmp_path):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / name)
    assert load_images(tmp_path).distinct is False
    Image.new("RGB", (8, 8), (11, 20, 30)).save(tmp_path / "c.png")
    assert load_images(tmp_path).distinct is True


def test_the_input_file_holds_exactly_the_preprocessed_batch_across_chunk_boundaries(tmp_path):
    images = _folder(tmp_path, CHUNK + 5)
    heard = []
    inputs, spread = write_input_file(images, _entry(), tmp_path / "inputs.bin",
                                      progress=lambda *done: heard.append(done))
    batch = preprocess(images.images, SETTINGS)
    assert inputs.fields == (("input", "float32", batch.shape[1:]),) and len(inputs) == CHUNK + 5
    assert np.array_equal(inputs.read()["input"], batch)
    assert np.array_equal(inputs.read(CHUNK - 2, CHUNK + 3)["input"], batch[CHUNK - 2:CHUNK + 3])
    assert np.array_equal(inputs.take([CHUNK + 4, 1])["input"], batch[[CHUNK + 4, 1]])
    assert inputs.take([])["input"].shape == (0, *batch.shape[1:])
    with pytest.raises(IndexError, match="outside"):
        inputs.take([CHUNK + 5])
    assert inputs.read(CHUNK + 5)["input"].shape == (0, *batch.shape[1:])
    assert spread == pytest.approx(float(batch.std(axis=(0, 2, 3)).max()), rel=1e-4)
    assert heard == [(CHUNK, CHUNK + 5), (CHUNK + 5, CHUNK + 5)]  # progress after each chunk


def test_a_flat_normalisation_has_a_tiny_spread(tmp_path):
    flat = Preprocess(resize=40, crop=32, mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0])
    _, spread = write_input_file(synthetic_images(4), _entry(flat), tmp_path / "inputs.bin")
    assert spread < 0.01


class _Recording(Runner):
    """Sums each sample, and remembers (in a file) how many samples every call got."""

    @classmethod
    def unavailable(cls, device, availability):
        return None

    def load(self, request):
        self.log = request.path

    def run(self, feeds):
        batch = feeds["input"]
        with open(self.log, "a") as log:
            log.write(f"{len(batch)}\n")
        flat = batch.reshape(len(batch), -1)
        return {"logits": np.stack([flat.sum(axis=1), flat.max(axis=1)], axis=1)}

    def describe(self):
        return {}


def test_the_worker_reads_a_chunk_and_runs_a_parity_batch_at_a_time_and_puts_them_back_in_order(tmp_path):
    count = 2 * CHUNK + 3
    inputs, _ = write_input_file(synthetic_images(count), _entry(), tmp_path / "inputs.bin")
    log = tmp_path / "calls.txt"
    job = CellJob(_Recording, LoadRequest(log, "cpu", 1), inputs, timing=False, policy=TimingPolicy(), batches=(1,),
                  full_speed=None, progress_file=tmp_path / "progress.txt")
    outcome = run_isolated(run_cell_job, job, limits=Limits(timeout_s=120))
    assert outcome.ok, outcome.message
    batch = inputs.read()["input"].reshape(count, -1)
    assert np.allclose(outcome.value["output"]["logits"][:, 0], batch.sum(axis=1), rtol=1e-5)
    assert len(outcome.value["again"]["logits"]) == PARITY_BATCH  # the determinism rerun: the first call
    assert sorted(outcome.value["probes"]) == [1, 3]
    calls = [int(line) for line in log.read_text().split()]
    # no call ever got more than a parity batch, and the chunks' ends are calls' ends
    per_chunk = [PARITY_BATCH] * (CHUNK // PARITY_BATCH)
    assert calls[:2 * len(per_chunk) + 1] == per_chunk * 2 + [3]
    assert (tmp_path / "progress.txt").read_text() == f"{count}/{count} samples"


def test_a_worker_waited_on_is_heard_about_every_second():
    ticks = []
    outcome = run_isolated(_sleep, 2.5, on_wait=lambda: ticks.append(1), limits=Limits(timeout_s=30))
    assert outcome.ok and 1 <= len(ticks) <= 3


def test_a_worker_past_its_time_is_killed_while_heard():
    outcome = run_isolated(_sleep, 30, on_wait=lambda: None, limits=Limits(timeout_s=1.5))
    assert not outcome.ok and outcome.failure == "timeout"


def _sleep(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def test_a_failing_cell_is_localised_on_its_worst_samples():
    reference = np.zeros((100, 4), np.float32)
    output = reference.copy()
    output[[7, 42, 93], 1] = [0.5, 2.0, 1.0]
    assert worst_samples(reference, output, 2) == [42, 93]  # the two that differ most, in sample order
    assert worst_samples(reference[:5], output[:5], 8) == [0, 1, 2, 3, 4]  # few: every sample
