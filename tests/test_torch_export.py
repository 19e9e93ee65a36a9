"""torch.export: the ExportedProgram artifact (a dynamic batch, loaded back) and its runner."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import built_artifact, loaded_on_any_batch, convert_tiny_zoo, tiny_entry
from verify.runners.base import Availability
from verify.runners.torch_runners import TorchExportRunner


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_tiny_zoo(tmp_path_factory.mktemp("export"),
                            [tiny_entry(formats=["eager", "torch_export"]),
                             tiny_entry("fixed", formats=["eager", "torch_export"], onnx={"dynamic_batch": False})])


def _program(root, model="tiny"):
    return built_artifact(root, "exported_program", model)


def test_the_program_takes_any_batch_and_matches_the_reference(converted):
    path, record = _program(converted)
    assert path.name == "model.pt2" and record.details["dynamic_batch"] and record.details["reload_max_abs_diff"] < 1e-5
    runner = loaded_on_any_batch(TorchExportRunner, path)
    config = runner.describe()
    assert config["precision"] == "fp32" and config["memory_format"] == "channels_last"


def test_a_fixed_batch_program_is_built_for_batch_1(converted):
    path, record = _program(converted, "fixed")
    assert not record.details["dynamic_batch"]
    program = torch.export.load(str(path))
    assert program.module()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(Exception):
        program.module()(torch.zeros(2, 3, 32, 32))


def test_cuda_without_a_gpu_is_a_skip_with_the_reason():
    assert TorchExportRunner.unavailable("cuda", Availability()) == \
        "torch: CUDA is not available (no GPU, or a CPU-only build)"
