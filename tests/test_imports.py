"""Light modules stay light (importing them loads no deep-learning framework), and shared names live once."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

FRAMEWORKS = ("torch", "torchvision", "paddle", "onnx", "onnxruntime", "openvino")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["verify.compare", "converter.zoo"])
def test_import_loads_no_framework(module):
    """verify.compare is pure (plain arrays, no models); converter.zoo only reads and validates YAML."""
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
    from verify.timing import Feeds as timing_feeds

    assert runner_feeds is Feeds and timing_feeds is Feeds
