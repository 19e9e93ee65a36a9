from __future__ import annotations

import functools
import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("PARITY_TRUSTED_MODULES", "tests")  # the tests' zoo files build models from tests/

TINY = "tests.tiny_models:tiny_cnn"
SMALL_INPUT = {"input": {"shape": [3, 32, 32]}, "preprocess": {"resize": 36, "crop": 32}}


def tiny_entry(name: str = "tiny", **fields) -> dict:
    """A zoo entry for a tiny model at 32x32; fields override."""
    entry = {"name": name, "arch": TINY, "weights": "random", "num_classes": 10, "seed": 0, **SMALL_INPUT}
    entry.update(fields)
    return {k: v for k, v in entry.items() if v is not None}


@pytest.fixture
def write_zoo(tmp_path: Path):
    """write_zoo(models, defaults=None, text=None) -> path of a zoo file in tmp_path."""

    def write(models=None, defaults=None, text: str | None = None, name: str = "zoo.yaml") -> Path:
        path = tmp_path / name
        if text is None:
            data = {"models": models}
            if defaults is not None:
                data["defaults"] = defaults
            text = yaml.safe_dump(data, sort_keys=False)
        path.write_text(text)
        return path

    return write


def convert_tiny_zoo(root: Path, models: list[dict]) -> Path:
    """Write a zoo of `models` in root and convert it into root/artifacts; returns root."""
    from converter.pipeline import RunOptions, convert
    from converter.zoo import load_zoo

    (root / "zoo.yaml").write_text(yaml.safe_dump({"models": models}))
    convert(load_zoo(root / "zoo.yaml"), RunOptions(out=root / "artifacts"))
    return root


def private_copy(converted: Path, tmp_path: Path) -> Path:
    """A copy of a converted folder (zoo, checkpoints, artifacts) that a test is free to damage."""
    shutil.copytree(converted, tmp_path, dirs_exist_ok=True)
    return tmp_path


def verify_api(workdir: Path, runners: dict | None = None, models: tuple[str, ...] | None = ("tiny",), **options) -> int:
    """The verifier's library API on a converted folder, with `runners` in place of the registered ones; writes
    the reports to workdir/reports and returns the exit code the command line would."""
    from verify.api import VerifyOptions, run, write_reports
    from verify.runners import registered_runners

    settings = {"artifacts": workdir / "artifacts", "zoo": workdir / "zoo.yaml", "devices": ("cpu",),
                "num_images": 4, "timing": False, "models": models, "partial": True, **options}
    verified = run(VerifyOptions(**settings), runners={**registered_runners(), **(runners or {})})
    write_reports(verified, workdir / "reports")
    return verified.verdict.exit_code


def loaded_on_any_batch(runner_class, path: Path):
    """A runner of `runner_class` loaded on a tiny model's artifact (input 3x32x32, 10 logits), after checking
    that it runs a batch of 5 and gives its first sample the answer it gives that sample alone."""
    import numpy as np

    from verify.runners.base import LoadRequest

    runner = runner_class()
    runner.load(LoadRequest(path, "cpu", 1, ("input",), ("logits",)))
    batch = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    out = runner.run({"input": batch})["logits"]
    assert out.shape == (5, 10)
    np.testing.assert_allclose(out[:1], runner.run({"input": batch[:1]})["logits"], atol=1e-5)
    return runner


def built_artifact(root: Path, artifact: str, model: str = "tiny"):
    """(the file a runtime loads, its manifest record) of an artifact that must have been built in root/artifacts."""
    from converter.manifest import read_manifest

    record = read_manifest(root / "artifacts").models[model].artifacts[artifact]
    assert record.ok, record.error
    return root / "artifacts" / record.path, record


def cannot_run_here(runtime: str, device: str = "cpu") -> str | None:
    """Why this machine's CPU (or the one $PARITY_CPUINFO describes) cannot run a runtime's cells: those cells
    SKIP with this reason, here and in the verifier alike."""
    return registered_runners_here()[0][runtime].unavailable(device, registered_runners_here()[1])


@functools.lru_cache(maxsize=1)
def registered_runners_here():
    """(the registered runners, this machine's probed Availability: installed packages, GPUs and CPU flags)."""
    from verify.runners import Availability, registered_runners

    return registered_runners(), Availability.probe()


@pytest.fixture(autouse=True)
def _process_state_restored():
    """load_zoo puts each zoo's folder on sys.path and a command run in-process logs to its own file (as the
    commands do): one test's must not reach the next."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved
    from converter.core.run_log import stop_logging_to_file

    stop_logging_to_file()  # a command run in this process logged to its tmp folder: the next test starts clean
