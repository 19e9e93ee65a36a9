"""The workbench as users install it: the built wheel (not the clone) in a venv of its own, its console scripts run
from another folder on a zoo of the user's own: relative paths, a model module beside the zoo file, the demo
written where the user says."""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from converter.core.cli import SUPPORTED_PYTHONS, python_problem

ROOT = Path(__file__).resolve().parents[1]

USER_MODEL = '''
from torch import nn


def small_net(**kwargs):
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 4))
'''


def run(command: list, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_wheel_outside_the_clone_converts_and_verifies_a_users_zoo(tmp_path):
    source, wheels = tmp_path / "source", tmp_path / "wheels"  # built from a copy: the build writes build/ beside it
    for folder in ("converter", "verify"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / file, source / file)
    # the build backend from this venv where it has one (3.11's venvs do; 3.12's no longer), else pip fetches it
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation", "--no-index"]
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", wheels, source], tmp_path)
    wheel = next(wheels.glob("parity_workbench-*.whl"))
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path)
    site = Path(run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    tmp_path).stdout.strip())
    # the pinned dependencies come from this interpreter's site-packages (installing torch again takes minutes);
    # the workbench itself only from the wheel: a folder named in a .pth file has its own .pth files ignored, so
    # the clone's editable install is not seen
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([venv / "bin" / "pip", "install", "--no-deps", "--no-index", wheel], tmp_path)

    user, elsewhere = tmp_path / "user", tmp_path / "elsewhere"
    (user / "photos").mkdir(parents=True)
    elsewhere.mkdir()
    (user / "my_models.py").write_text(USER_MODEL)
    rng = np.random.default_rng(0)
    for index in range(4):
        Image.fromarray(rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)).save(user / "photos" / f"{index}.png")
    (user / "zoo.yaml").write_text(yaml.safe_dump({"models": [
        {"name": "mine", "arch": "my_models:small_net", "weights": "random", "input": {"shape": [3, 32, 32]},
         "preprocess": {"resize": 36, "crop": 32}, "images": "photos", "formats": ["eager", "onnx"]}]},
        sort_keys=False))

    where = run([venv / "bin" / "python", "-c", "import converter, verify; print(converter.__file__, verify.__file__)"],
                elsewhere).stdout
    assert str(ROOT) not in where and all(str(venv) in path for path in where.split())
    # the demo where the user says (the default zoo's bees-vs-ants reads it; converting a ResNet18 here would add
    # half a minute and test nothing more about the install)
    run([venv / "bin" / "python", "-m", "converter.demo", "--out", "../user/demo/checkpoint.pkl", "--no-shapes"],
        elsewhere)
    assert (user / "demo" / "checkpoint.pkl").is_file() and len(list((user / "demo" / "val").glob("*/*"))) == 64
    run([venv / "bin" / "parity-convert", "../user/zoo.yaml", "--out", "../user/artifacts"], elsewhere)
    verified = run([venv / "bin" / "parity-verify", "--artifacts", "../user/artifacts", "--zoo", "../user/zoo.yaml",
                    "--report", "../user/reports", "--no-timing"], elsewhere)
    assert "PASS" in verified.stderr and (user / "reports" / "report.md").is_file()
    report = (user / "reports" / "report.md").read_text()
    assert "## mine" in report and "4 images" in report


def test_the_pythons_the_tool_runs_on_are_the_ones_pip_installs_it_on():
    accepted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low, high = (int(minor) for minor in re.fullmatch(r">=3\.(\d+),<3\.(\d+)", accepted).groups())
    assert SUPPORTED_PYTHONS == tuple((3, minor) for minor in range(low, high))
    assert all(python_problem(version) is None for version in SUPPORTED_PYTHONS)
    assert "onnxruntime" in python_problem((3, 10)) and "paddlepaddle" in python_problem((3, 14))
