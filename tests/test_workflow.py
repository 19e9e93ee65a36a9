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


def test_shards_run_as_a_matrix_the_gate_merges_them_and_deploy_needs_the_gate():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    shard, gate, deploy = (workflow["jobs"][name] for name in ("shard", "gate", "deploy"))
    matrix = shard["strategy"]["matrix"]["shard"]
    assert matrix == list(range(1, workflow["env"]["SHARDS"] + 1))  # every shard K of N, once
    assert shard["strategy"]["fail-fast"] is False
    commands = "\n".join(step.get("run", "") for step in shard["steps"])
    split = "--shard ${{ matrix.shard }}/${{ env.SHARDS }}"
    assert f"parity-convert zoo.yaml {split}" in commands and f"parity-verify --report reports/ {split}" in commands
    uses = {step.get("uses", "").split("@")[0]: step for step in shard["steps"]}
    assert "reports/" in uses["actions/upload-artifact"]["with"]["path"]
    assert uses["actions/upload-artifact"]["with"]["name"] == "parity-shard-${{ matrix.shard }}"
    assert gate["needs"] == "shard" and "!cancelled()" in gate["if"]  # a blocked shard is still merged
    steps = {step.get("uses", "").split("@")[0]: step for step in gate["steps"]}
    assert steps["actions/download-artifact"]["with"] == {"pattern": "parity-shard-*", "path": "shards"}
    merge = "\n".join(step.get("run", "") for step in gate["steps"])
    assert "parity-verify merge shards/parity-shard-*/reports --report reports/" in merge
    assert steps["mikepenz/action-junit-report"]["with"]["report_paths"] == "reports/junit.xml"
    assert deploy["needs"] == "gate"  # a blocked gate (exit 1) skips the deploy


def test_the_tests_run_on_every_python_the_package_accepts():
    """The `tests` job's matrix is pyproject's requires-python range, minor by minor, through .ci/run."""
    import re
    import tomllib

    workflow = yaml.safe_load(WORKFLOW.read_text())
    tests = workflow["jobs"]["tests"]
    accepted = tomllib.loads((WORKFLOW.parents[2] / "pyproject.toml").read_text())["project"]["requires-python"]
    low, high = (int(minor) for minor in re.fullmatch(r">=3\.(\d+),<3\.(\d+)", accepted).groups())
    assert tests["strategy"]["matrix"]["python"] == [f"3.{minor}" for minor in range(low, high)]
    steps = {step.get("uses", "").split("@")[0]: step for step in tests["steps"]}
    assert steps["actions/setup-python"]["with"]["python-version"] == "${{ matrix.python }}"
    assert any(".ci/run" in step.get("run", "") for step in tests["steps"])
