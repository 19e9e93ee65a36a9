"""The installed commands: parity-convert, parity-verify and parity-predict are the python -m commands."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = {"parity-convert": "converter", "parity-verify": "verify", "parity-predict": "verify.predict"}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_console_script_is_installed_and_runs_its_command(script):
    path = Path(sys.executable).parent / script  # pip puts it beside the venv's python (.ci/run installs with -e)
    if not path.exists():
        pytest.skip(f"{script} is not installed in this environment (pip install -e . puts it in {path.parent})")
    done = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=120)
    same = subprocess.run([sys.executable, "-m", SCRIPTS[script], "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout == same.stdout
