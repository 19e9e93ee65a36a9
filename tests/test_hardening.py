"""Faults, bad input and hostile files: crashes and hangs are isolated, nothing goes green by accident."""
from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
import yaml
from onnx import TensorProto, helper

from converter.__main__ import main as converter_main
from converter.core.checkpoints import load_checkpoint
from converter.core.errors import ModelLoadError, ZooError
from converter.core.isolation import Limits, run_isolated
from converter.manifest import FileRecord, file_sha256, read_manifest, write_manifest
from converter.pipeline import RunOptions, convert
from converter.zoo import load_zoo
from tests.conftest import convert_tiny_zoo, private_copy, tiny_entry, verify_api
from verify.__main__ import main as verify_main
from verify.runners import RunnerError
from verify.runners.onnxruntime_runner import OnnxRuntimeRunner, check_external_data
from verify.runners.paddle_runners import PaddleJitRunner
from verify.runners.torch_runners import TorchScriptRunner


# --- the worker itself -------------------------------------------------------------------------------------

def _returns(value):
    return value


def _raises():
    raise ValueError("bad value")


def _aborts():
    os.abort()


def _sleeps():
    time.sleep(60)


def _hoards():
    chunks = []
    while True:
        chunks.append(np.ones(1 << 27))  # 1 GiB, touched


def test_worker_outcomes():
    assert run_isolated(_returns, {"a": np.arange(3)}).value["a"].tolist() == [0, 1, 2]
    raised = run_isolated(_raises)
    assert (raised.ok, raised.failure, raised.message) == (False, "exception", "ValueError: bad value")
    assert "_raises" in raised.traceback
    aborted = run_isolated(_aborts)
    assert aborted.failure == "signal" and "SIGABRT" in aborted.message
    started = time.perf_counter()
    hung = run_isolated(_sleeps, limits=Limits(timeout_s=1))
    assert hung.failure == "timeout" and time.perf_counter() - started < 15
    hoarded = run_isolated(_hoards, limits=Limits(memory_mb=6144))
    assert hoarded.failure == "out-of-memory" and "limit 6144 MiB" in hoarded.message


def test_the_fork_server_starts_without_the_thread_limit_paddle_sets_on_import(monkeypatch):
    """Importing Paddle sets OMP_NUM_THREADS=1; a fork server started with it runs numpy's BLAS in every worker
    on one core (the timing canary read half the machine's speed and every cell waited for the rest)."""
    import multiprocessing.forkserver

    from converter.core import isolation

    seen = {}
    monkeypatch.setattr(isolation, "_context", None)
    monkeypatch.setattr(isolation, "_startup_threads", {"OMP_NUM_THREADS": None, "MKL_NUM_THREADS": "3"})
    monkeypatch.setattr(multiprocessing.forkserver, "ensure_running",
                        lambda: seen.update({k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as `import paddle` leaves it
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    isolation._fork_server()
    assert seen == {"OMP_NUM_THREADS": None, "MKL_NUM_THREADS": "3"}
    assert os.environ["OMP_NUM_THREADS"] == "1" and "MKL_NUM_THREADS" not in os.environ  # the parent's, as it was


# --- inside real runs -------------------------------------------------------------------------------------

class _AbortingRunner(PaddleJitRunner):
    def run(self, feeds):
        os.abort()


class _HangingRunner(TorchScriptRunner):
    def load(self, request):
        time.sleep(60)


class _HoardingRunner(OnnxRuntimeRunner):
    def run(self, feeds):
        _hoards()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_tiny_zoo(tmp_path_factory.mktemp("hardening"), [tiny_entry()])


@pytest.fixture
def workdir(converted, tmp_path):
    return private_copy(converted, tmp_path)


def verify(workdir, *extra):
    return verify_main(["--artifacts", str(workdir / "artifacts"), "--report", str(workdir / "reports"),
                        "--zoo", str(workdir / "zoo.yaml"), "--devices", "cpu", "--partial", "--no-timing",
                        "--num-images", "3", *extra])


def cells(workdir) -> dict[tuple[str, str], pd.Series]:
    frame = pd.read_csv(workdir / "reports" / "parity.csv")
    return {(row.artifact, row.runtime): row for row in frame.itertuples()}


def test_abort_hang_and_memory_hog_are_error_cells_beside_healthy_ones(workdir):
    runners = {"paddle-jit": _AbortingRunner, "torchscript": _HangingRunner, "onnxruntime": _HoardingRunner}
    assert verify_api(workdir, runners, num_images=3, limits=Limits(timeout_s=20, memory_mb=6144)) == 1
    result = cells(workdir)
    assert result[("paddle", "paddle-jit")].status == "ERROR" and "SIGABRT" in result[("paddle", "paddle-jit")].detail
    assert result[("torchscript", "torchscript")].status == "ERROR"
    assert "timeout" in result[("torchscript", "torchscript")].detail
    hog = result[("onnx", "onnxruntime")]
    assert hog.status == "ERROR" and "out-of-memory" in hog.detail and "6144 MiB" in hog.detail
    assert result[("eager", "torch")].status == "PASS"
    assert result[("paddle", "paddle-inference")].status == "PASS"


def _aborting_exporter(ctx):
    os.abort()


def test_crashing_conversion_is_recorded_and_the_rest_goes_on(write_zoo, tmp_path):
    zoo = load_zoo(write_zoo(models=[tiny_entry(formats=["eager", "torchscript", "onnx"])]))
    artifacts = convert(zoo, RunOptions(out=tmp_path / "a"), exporters={"torchscript": _aborting_exporter}
                        ).models["tiny"].artifacts
    assert not artifacts["torchscript"].ok and "SIGABRT" in artifacts["torchscript"].error
    assert artifacts["onnx"].ok and artifacts["onnx_simplified"].ok


def _simplify_reports_failure(ctx):
    """onnxsim returning check_ok=False (its own comparison of the two models failed)."""
    import onnxsim

    from converter.exporters.onnx_export import export_simplified

    original = onnxsim.simplify
    onnxsim.simplify = lambda model, *args, **kwargs: (original(model)[0], False)
    return export_simplified(ctx)


def test_onnxsim_check_failure_marks_the_simplified_artifact_failed(write_zoo, tmp_path):
    zoo = load_zoo(write_zoo(models=[tiny_entry(formats=["eager", "onnx"])]))
    artifacts = convert(zoo, RunOptions(out=tmp_path / "a"), exporters={"onnx_simplified": _simplify_reports_failure}
                        ).models["tiny"].artifacts
    assert artifacts["onnx"].ok
    assert not artifacts["onnx_simplified"].ok and "onnxsim's own output check failed" in artifacts["onnx_simplified"].error


def test_factory_that_crashes_fails_only_its_model(write_zoo, tmp_path):
    zoo = load_zoo(write_zoo(models=[tiny_entry("crashing", arch="tests.tiny_models:aborting_factory"),
                                     tiny_entry("fine", formats=["eager", "onnx"])]))
    manifest = convert(zoo, RunOptions(out=tmp_path / "a"))
    crashing = manifest.models["crashing"]
    assert "SIGABRT" in crashing.error and "SIGABRT" in crashing.artifacts["eager"].error
    assert crashing.artifacts["paddle"].error == "not attempted: needs eager, which failed"
    assert all(art.ok for art in manifest.models["fine"].artifacts.values())


def _replace_file(workdir, artifact: str, damage) -> None:
    """Damage an artifact file and record the damaged file in the manifest, as a broken conversion would."""
    root = workdir / "artifacts"
    manifest = read_manifest(root)
    record = manifest.models["tiny"].artifacts[artifact]
    target = root / (record.path if artifact != "paddle" else record.path.replace("model.json", "model.pdiparams"))
    target.write_bytes(damage(target.read_bytes()))
    record.files[str(target.relative_to(root))] = FileRecord(file_sha256(target), target.stat().st_size)
    write_manifest(root, manifest)


def test_truncated_onnx_and_corrupted_paddle_params_are_errors(workdir):
    _replace_file(workdir, "onnx", lambda data: data[: len(data) // 3])
    _replace_file(workdir, "paddle", lambda data: data[: len(data) // 2])
    assert verify(workdir) == 1
    result = cells(workdir)
    assert result[("onnx", "onnxruntime")].status == "ERROR"
    assert result[("paddle", "paddle-inference")].status == "ERROR"
    assert result[("paddle", "paddle-jit")].status == "ERROR"
    assert result[("onnx_simplified", "onnxruntime")].status == "PASS"


def test_manifest_path_escaping_the_artifacts_folder_is_refused(workdir):
    root = workdir / "artifacts"
    manifest = read_manifest(root)
    manifest.models["tiny"].artifacts["onnx"].path = "../../etc/passwd"
    write_manifest(root, manifest)
    assert verify(workdir) == 1
    assert "escapes the artifacts folder" in cells(workdir)[("onnx", "onnxruntime")].detail


def test_missing_artifact_file_is_reported(workdir):
    root = workdir / "artifacts"
    os.remove(root / read_manifest(root).models["tiny"].artifacts["onnx_simplified"].path)
    assert verify(workdir) == 1
    assert "artifact file missing" in cells(workdir)[("onnx_simplified", "onnxruntime")].detail


def test_one_image_is_not_enough(workdir, capsys):
    from PIL import Image

    images = workdir / "one"
    images.mkdir()
    Image.new("RGB", (40, 40), (1, 2, 3)).save(images / "a.png")
    Image.new("RGB", (40, 40), (1, 2, 3)).save(images / "b.png")  # the same picture twice
    assert verify(workdir, "--images", str(images)) == 2
    assert "at least 2 distinct images" in capsys.readouterr().err


# --- unsafe files ----------------------------------------------------------------------------------------

def _external_data_model(folder, location: str):
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2])
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value=location)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [weight])
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_onnx_external_data_must_stay_in_the_artifact_folder(tmp_path):
    folder = tmp_path / "artifact"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.ones(2, np.float32).tobytes())
    (folder / "weights.bin").write_bytes(np.ones(2, np.float32).tobytes())
    check_external_data(_external_data_model(folder, "weights.bin"))  # inside: fine
    for location in ("../secret.bin", str(tmp_path / "secret.bin")):
        with pytest.raises(RunnerError, match="outside the artifact folder"):
            check_external_data(_external_data_model(folder, location))
    (folder / "link.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(RunnerError, match="outside the artifact folder"):
        check_external_data(_external_data_model(folder, "link.bin"))


def test_forced_unsafe_torch_load_is_refused(monkeypatch, tmp_path, write_zoo, capsys):
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pt")
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(ModelLoadError, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set"):
        load_checkpoint(tmp_path / "w.pt", trust_pickle=False)
    assert converter_main([str(write_zoo(models=[tiny_entry()])), "--out", str(tmp_path / "a")]) == 2
    assert verify_main(["--report", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.count("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set") == 2
    assert not (tmp_path / "a").exists()


BILLION_LAUGHS = """
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
models: [{name: x, arch: "tests.tiny_models:tiny_cnn", weights: random, arch_args: {junk: *g}}]
"""


def test_yaml_alias_bomb_is_refused_quickly(write_zoo):
    started = time.perf_counter()
    with pytest.raises(ZooError, match="through YAML aliases"):
        load_zoo(write_zoo(text=BILLION_LAUGHS))
    assert time.perf_counter() - started < 2


def test_verbose_shows_the_traceback_of_a_user_error(write_zoo, tmp_path, capsys):
    path = write_zoo(models=[tiny_entry(seed="x")])
    assert converter_main([str(path), "--out", str(tmp_path / "a"), "--verbose"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


def test_report_records_each_runtimes_effective_configuration(workdir):
    assert verify(workdir) == 0
    summary = json.loads((workdir / "reports" / "summary.json").read_text())
    report = (workdir / "reports" / "report.md").read_text()
    assert summary["verdict"] == "PASS (partial)"
    assert "onednn=True" in report and "ir_optim=True" in report and "graph_optimization=ORT_ENABLE_ALL" in report


del signal


class _FlickeringRunner(OnnxRuntimeRunner):
    """Each run stays within atol of the truth, but consecutive runs differ by 1.8 x atol."""

    calls = 0

    def run(self, feeds):
        _FlickeringRunner.calls += 1
        return {name: value + np.float32(9e-4 if self.calls % 2 else -9e-4)
                for name, value in super().run(feeds).items()}


def test_non_deterministic_runtime_is_reported(workdir):
    zoo = yaml.safe_load((workdir / "zoo.yaml").read_text())
    zoo["models"][0]["tolerance"] = {"atol": 1e-3, "rtol": 0.0}
    (workdir / "zoo.yaml").write_text(yaml.safe_dump(zoo))
    assert verify_api(workdir, {"onnxruntime": _FlickeringRunner}, num_images=3) == 1
    onnx_cell = cells(workdir)[("onnx", "onnxruntime")]
    assert onnx_cell.status == "FAIL" and onnx_cell.detail.startswith("not deterministic")
    assert cells(workdir)[("paddle", "paddle-inference")].status == "PASS"


def test_trusted_torchscript_source_is_named_in_the_report(tmp_path):
    module = tiny_cnn_module()
    torch.jit.save(torch.jit.trace(module, torch.zeros(1, 3, 32, 32)), str(tmp_path / "model.ts"))
    convert_tiny_zoo(tmp_path, [tiny_entry("scripted", arch=None, weights=None, num_classes=None,
                                           checkpoint="model.ts", trust_pickle=True, formats=["eager", "onnx"])])
    assert verify(tmp_path) == 0
    assert "loaded from a **trusted pickle** (`trust_pickle: true`)" in (tmp_path / "reports" / "report.md").read_text()
    assert json.loads((tmp_path / "reports" / "summary.json").read_text())["models"]["scripted"]["trusted_pickle"]


def tiny_cnn_module():
    from converter.models import realistic_init
    from converter.zoo import Preprocess
    from tests.tiny_models import tiny_cnn

    module = tiny_cnn()
    realistic_init(module, 0, Preprocess(resize=36, crop=32), batches=1, batch_size=4)
    return module.eval()


def test_an_eager_artifact_naming_a_standard_library_factory_is_refused_when_loaded(tmp_path):
    """The verifier rebuilds the reference from reference.json: a hostile artifacts folder cannot make it run
    `subprocess.run` (the zoo's trust check does not see that file)."""
    import json as json_module

    from converter.core.reference import load_reference

    marker = tmp_path / "ran"
    (tmp_path / "reference.json").write_text(json_module.dumps(
        {"kind": "state_dict", "arch": "subprocess:run", "kwargs": {"args": ["touch", str(marker)]}, "seed": 0}))
    with pytest.raises(ModelLoadError, match="standard-library module"):
        load_reference(tmp_path)
    assert not marker.exists()
