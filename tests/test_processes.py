"""Whole runs in subprocesses: killed at random moments, and with the network fenced off."""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from converter.core.registry import load_object
from converter.core.vocabulary import ARTIFACTS
from converter.manifest import ManifestError, file_sha256, read_manifest
from tests.conftest import tiny_entry

REPO = Path(__file__).resolve().parent.parent


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "GLOG_minloglevel": "2", **extra}


def _consistent(out: Path) -> int:
    """Every artifact the manifest calls ok is on disk with its recorded sha256; returns how many."""
    try:
        manifest = read_manifest(out)
    except ManifestError:
        assert not (out / "manifest.json").exists(), "a manifest exists but cannot be read"
        return 0
    count = 0
    for model in manifest.models.values():
        for art in model.artifacts.values():
            if art.ok:
                assert (out / art.path).is_file()
                for rel, info in art.files.items():
                    assert file_sha256(out / rel) == info.sha256, rel
                count += 1
    return count


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_consistent_manifest(tmp_path):
    out = tmp_path / "artifacts"
    zoo = tmp_path / "zoo.yaml"
    command = [sys.executable, "-m", "converter", str(zoo), "--out", str(out)]
    rng = random.Random(20261123)
    models = ("a", "b", "c")
    for attempt in range(3):
        # a new seed each time, so every run has real conversions to do (and old artifacts to keep safe)
        zoo.write_text(yaml.safe_dump({"models": [tiny_entry(name, seed=attempt) for name in models]}))
        process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        time.sleep(rng.uniform(2.0, 10.0))  # a run of 3 models takes over 20 s here
        assert process.poll() is None, "the converter finished before the kill: nothing was interrupted"
        os.killpg(process.pid, signal.SIGKILL)  # the converter, its fork server and its workers
        process.wait()
        _consistent(out)
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    buildable = sorted(name for name, spec in ARTIFACTS.items()  # every registered artifact this machine can build
                       if not (spec.cannot_build_here and load_object(spec.cannot_build_here)()))
    assert _consistent(out) == len(buildable) * len(models)
    assert not [p for p in out.rglob(".staging-*")]
    assert sorted(p.name.split("-")[0] for p in (out / "a").iterdir()) == buildable  # none of the killed runs' left


_PROBE = """
import socket, sys
port, refused = int(sys.argv[1]), []
attempts = {
    "connect": lambda s: s.connect(("127.0.0.1", port)),
    "connect_ex": lambda s: s.connect_ex(("127.0.0.1", port)),
    "getaddrinfo": lambda s: socket.getaddrinfo("127.0.0.1", port, flags=socket.AI_NUMERICHOST),
}
for name, attempt in attempts.items():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            attempt(s)
        except OSError as exc:
            refused += [name] if "refused by the test guard" in str(exc) else []
print(" ".join(refused))
"""


def _the_guard_refuses_a_loopback_connection(env: dict, log: Path) -> None:
    """The guard catches attempts: tried on a loopback socket this test listens on, so that no packet could leave
    the machine if the guard ever stopped refusing (the listener would then hold the connection)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        probe = subprocess.run([sys.executable, "-c", _PROBE, str(listener.getsockname()[1])], env=env,
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stderr[-2000:]
        assert probe.stdout.split() == ["connect", "connect_ex", "getaddrinfo"]
        with pytest.raises(BlockingIOError):  # no connection reached the listener
            listener.accept()
    assert len(log.read_text().splitlines()) == 3


def test_no_network_access_by_converter_or_verifier(tmp_path):
    log = tmp_path / "network.log"
    env = _env(PYTHONPATH=f"{REPO / 'tests' / 'netguard'}{os.pathsep}{REPO}", PARITY_NETWORK_LOG=str(log))
    _the_guard_refuses_a_loopback_connection(env, log)
    log.unlink()
    (tmp_path / "zoo.yaml").write_text(yaml.safe_dump({"models": [tiny_entry()]}))
    convert = subprocess.run([sys.executable, "-m", "converter", str(tmp_path / "zoo.yaml"),
                              "--out", str(tmp_path / "artifacts")], env=env, capture_output=True, text=True,
                             timeout=600)
    assert convert.returncode == 0, convert.stderr[-2000:]
    check = subprocess.run([sys.executable, "-m", "verify", "--artifacts", str(tmp_path / "artifacts"),
                            "--report", str(tmp_path / "reports"), "--no-timing", "--num-images", "2"],
                           env=env, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stderr[-2000:]
    assert not log.exists(), log.read_text()  # x2paddle's feedback calls included: nothing tried to connect
