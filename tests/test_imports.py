"""Light modules stay light (importing them loads no deep-learning framework), and shared names live once."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

FRAMEWORKS = ("torch", "torchvision", "paddle", "onnx", "onnxruntime", "openvino")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["verify.judge.compare", "converter.zoo"])
def test_import_loads_no_framework(module):
    """verify.judge.compare is pure (plain arrays, no models); converter.zoo only reads and validates YAML."""
    code = (f"import json, sys, {module}; "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({FRAMEWORKS!r}))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_feeds_is_defined_once_and_shared():
    """`Feeds` lives in converter.core.outputs (light, and importable by both sides); the rest import it."""
    definition = re.compile(r"^\s*Feeds\s*(:[^=]*)?=", re.MULTILINE)
    defined_in = sorted(str(path.relative_to(ROOT)) for folder in ("converter", "verify")
                        for path in (ROOT / folder).rglob("*.py") if definition.search(path.read_text()))
    assert defined_in == [str(Path("converter", "core", "outputs.py"))]
    from converter.core.outputs import Feeds
    from verify.runners.base import Feeds as runner_feeds
    from verify.cells.timing import Feeds as timing_feeds

    assert runner_feeds is Feeds and timing_feeds is Feeds


def test_the_verifiers_own_process_plans_without_torch_or_paddle(tmp_path):
    """What a verify run does in its own process before and after the cells (runners, zoo, class names, the GPU
    probe, the machine's description) imports neither torch nor Paddle: 4 s of an unchanged re-run that needs
    neither. The workers import them (once, in the fork server)."""
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump({"models": [
        {"name": "resnet", "arch": "torchvision:resnet18", "weights": "random"},
        {"name": "lite", "arch": "pretrained:efficientnet_lite0", "weights": "IMAGENET1K",
         "preprocess": {"mean": [0.49804] * 3, "std": [0.50196] * 3}}]}))
    code = ("import json, sys\n"
            "from converter.zoo import load_zoo\n"
            "import verify.cells.environment\n"
            "verify.cells.environment.nvidia_gpu_visible = lambda: False  # a machine with a GPU asks torch to name it\n"
            "from verify.runners import Availability, registered_runners\n"
            "import verify.api\n"
            "registered_runners(); Availability.probe(gpu_visible=False); verify.cells.environment.describe_machine(2)\n"
            f"zoo = load_zoo({str(zoo)!r}, find_factories=False)\n"
            "assert [len(m.class_names() or []) for m in zoo.models] == [0, 1000]\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'torchvision', 'paddle'})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
