"""The GitHub Actions workflow: valid against the workflow schema, and shaped as a gate that blocks a deploy."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "parity.yml"


def validate(path: Path) -> subprocess.CompletedProcess:
    linter = Path(sys.executable).parent / "check-jsonschema"
    if not linter.exists():
        linter = shutil.which("check-jsonschema")
    if linter is None:
        pytest.skip("check-jsonschema is not installed (pip install -e '.[dev]' installs it)")
    return subprocess.run([str(linter), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_the_workflow_is_valid_for_github_actions():
    done = validate(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_linter_rejects_a_broken_workflow(tmp_path):
    broken = yaml.safe_load(WORKFLOW.read_text())
    del broken["jobs"]["gate"]["runs-on"]
    broken["jobs"]["deploy"]["needs"] = {"job": "gate"}
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert validate(path).returncode != 0


def test_the_gate_runs_the_commands_and_deploy_needs_it():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    gate, deploy = workflow["jobs"]["gate"], workflow["jobs"]["deploy"]
    commands = "\n".join(step.get("run", "") for step in gate["steps"])
    assert "parity-convert zoo.yaml" in commands and "parity-verify --report reports/" in commands
    uses = {step.get("uses", "").split("@")[0]: step for step in gate["steps"]}
    assert "reports/" in uses["actions/upload-artifact"]["with"]["path"]
    assert uses["mikepenz/action-junit-report"]["with"]["report_paths"] == "reports/junit.xml"
    assert deploy["needs"] == "gate"  # a blocked gate (exit 1) skips the deploy
