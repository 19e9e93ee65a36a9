"""Run in a worker by tests/test_openvino.py: this module imports no openvino (the test module does), so the
worker that unpickles it starts as a verifier's cell worker does."""
from __future__ import annotations

import sys
from pathlib import Path


def openvino_telemetry_after_load(path: str) -> tuple[bool, str]:
    """(whether openvino was imported before the runner loaded `path`, what `openvino_telemetry` is after it: "None"
    when it was stubbed out before openvino's first import)."""
    from verify.runners.base import LoadRequest
    from verify.runners.openvino_runner import OpenVinoRunner

    before = "openvino" in sys.modules
    OpenVinoRunner().load(LoadRequest(Path(path), "cpu", 1, ("input",), ("logits",), False))
    return before, repr(sys.modules.get("openvino_telemetry", "absent"))
