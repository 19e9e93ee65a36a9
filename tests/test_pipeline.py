"""The converter end to end on tiny models: artifacts, manifest, recorded failures, atomic writes."""
from __future__ import annotations

import json
import socket

import numpy as np
import onnxruntime as ort
import pytest
import torch

from converter import exporters
from converter.__main__ import main as converter_main
from converter.exporters.eager import load_reference
from converter.manifest import file_sha256, read_manifest
from converter.pipeline import RunOptions, convert_zoo
from converter.zoo import load_zoo
from tests.conftest import tiny_entry


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Two tiny models through every format once; one fails x2paddle (aten::flip) for real."""
    root = tmp_path_factory.mktemp("convert")
    zoo_path = root / "zoo.yaml"
    import yaml

    zoo_path.write_text(yaml.safe_dump({"models": [
        tiny_entry("tiny"),
        tiny_entry("flipper", arch="tests.tiny_models:flipping_cnn"),
    ]}))
    out = root / "artifacts"
    code = converter_main([str(zoo_path), "--out", str(out)])
    return code, out, read_manifest(out)


def test_every_format_is_built_and_recorded(converted):
    code, out, manifest = converted
    tiny = manifest.models["tiny"]
    assert set(tiny.artifacts) == {"eager", "torchscript", "onnx", "onnx_simplified", "paddle"}
    for name, record in tiny.artifacts.items():
        assert record.ok, (name, record.error)
        assert (out / record.path).is_file()
        assert record.source_sha256 == tiny.source["weights_sha256"]
        for rel, info in record.files.items():
            assert file_sha256(out / rel) == info.sha256 and (out / rel).stat().st_size == info.size
    assert tiny.artifacts["paddle"].path.endswith("model.json")
    assert {"model.json", "model.pdiparams"} <= {p.name for p in (out / "tiny" / "paddle").iterdir()}
    simplified = tiny.artifacts["onnx_simplified"].details
    assert simplified["nodes_after"] <= simplified["nodes_before"]
    assert manifest.tools["torch"] == "2.14.1" and manifest.tools["x2paddle"] == "1.6.0"
    assert tiny.config["name"] == "tiny" and tiny.config["tolerance"]["atol"] == 1e-4


def test_conversion_failure_is_recorded_and_the_rest_goes_on(converted):
    code, out, manifest = converted
    flipper = manifest.models["flipper"].artifacts
    assert code == 1
    assert not flipper["paddle"].ok
    assert "aten::flip" in flipper["paddle"].error
    assert not (out / "flipper" / "paddle").exists()
    assert all(flipper[name].ok for name in ("eager", "torchscript", "onnx", "onnx_simplified"))


@pytest.mark.parametrize("artifact", ["onnx", "onnx_simplified"])
def test_onnx_has_a_dynamic_batch_axis(converted, artifact):
    _, out, manifest = converted
    record = manifest.models["tiny"].artifacts[artifact]
    session = ort.InferenceSession(str(out / record.path), providers=["CPUExecutionProvider"])
    reference = load_reference(out / "tiny" / "eager")
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        (got,) = session.run(None, {"input": x})
        with torch.no_grad():
            expected = reference(torch.from_numpy(x)).numpy()
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)


def test_eager_artifact_rebuilds_the_exact_reference(converted):
    _, out, manifest = converted
    module = load_reference(out / "tiny" / "eager")
    from converter.models import weights_sha256

    assert weights_sha256(module) == manifest.models["tiny"].source["weights_sha256"]


def test_trace_check_failure_is_recorded(write_zoo, tmp_path):
    zoo = load_zoo(write_zoo(models=[tiny_entry("counting", arch="tests.tiny_models:call_counting_cnn",
                                                formats=["eager", "torchscript", "onnx"],
                                                onnx={"simplify": False})]))
    manifest = convert_zoo(zoo, RunOptions(out=tmp_path / "a"))
    record = manifest.models["counting"].artifacts["torchscript"]
    assert not record.ok and "TracingCheckError" in record.error
    assert "\n" not in record.error
    # a model whose output changes from call to call cannot serve as a reference either
    assert "does not reproduce the model's output" in manifest.models["counting"].artifacts["eager"].error
    assert manifest.models["counting"].artifacts["onnx"].ok  # the rest went on


def test_model_build_failure_fails_its_artifacts_only(write_zoo, tmp_path):
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "bad.pt")
    zoo = load_zoo(write_zoo(models=[tiny_entry("broken", weights=None, checkpoint="bad.pt", formats=["eager", "onnx"]),
                                     tiny_entry("fine", formats=["eager"])]))
    manifest = convert_zoo(zoo, RunOptions(out=tmp_path / "a"))
    broken = manifest.models["broken"]
    assert "does not fit the architecture" in broken.error
    assert [a.status for a in broken.artifacts.values()] == ["failed"] * 3
    assert manifest.models["fine"].artifacts["eager"].ok


def _half_writing_exporter(ctx):
    (ctx.out_dir / "model.onnx").write_bytes(b"\x08\x07half")
    raise RuntimeError("disk full")


def test_failed_export_leaves_no_half_written_artifact(write_zoo, tmp_path, monkeypatch):
    out = tmp_path / "a"
    zoo = load_zoo(write_zoo(models=[tiny_entry(formats=["eager", "onnx"], onnx={"simplify": False})]))
    first = convert_zoo(zoo, RunOptions(out=out))
    assert first.models["tiny"].artifacts["onnx"].ok
    monkeypatch.setitem(exporters.EXPORTERS, "onnx", _half_writing_exporter)
    second = convert_zoo(zoo, RunOptions(out=out))
    record = second.models["tiny"].artifacts["onnx"]
    assert record.status == "failed" and "disk full" in record.error and record.path is None
    # neither the half-written file nor the stale artifact of the first run remains under any name
    assert not (out / "tiny" / "onnx").exists()
    assert [p.name for p in (out / "tiny").iterdir()] == ["eager"]
    assert read_manifest(out).models["tiny"].artifacts["onnx"].status == "failed"


def test_interrupted_export_keeps_previous_manifest_and_artifacts(write_zoo, tmp_path, monkeypatch):
    out = tmp_path / "a"
    zoo = load_zoo(write_zoo(models=[tiny_entry(formats=["eager", "onnx"], onnx={"simplify": False})]))
    convert_zoo(zoo, RunOptions(out=out))
    before = (out / "manifest.json").read_text()
    onnx_sha = file_sha256(out / "tiny" / "onnx" / "model.onnx")

    def interrupted(ctx):
        (ctx.out_dir / "model.onnx").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setitem(exporters.EXPORTERS, "onnx", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_zoo(zoo, RunOptions(out=out))
    assert (out / "manifest.json").read_text() == before
    assert file_sha256(out / "tiny" / "onnx" / "model.onnx") == onnx_sha
    assert not [p for p in (out / "tiny").iterdir() if p.name.startswith(".")]


def test_formats_subset_keeps_other_artifacts(write_zoo, tmp_path):
    out = tmp_path / "a"
    zoo = load_zoo(write_zoo(models=[tiny_entry(formats=["eager", "onnx"], onnx={"simplify": False})]))
    convert_zoo(zoo, RunOptions(out=out))
    again = convert_zoo(zoo, RunOptions(out=out, formats=["onnx"]))
    assert set(again.models["tiny"].artifacts) == {"eager", "onnx"}
    assert all(a.ok for a in again.models["tiny"].artifacts.values())


def test_cli_exit_0_summary_and_progress(write_zoo, tmp_path, capsys):
    path = write_zoo(models=[tiny_entry(formats=["eager", "onnx"])])
    assert converter_main([str(path), "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "onnx_simplified" in captured.out and "ok" in captured.out  # summary table
    assert "tiny" in captured.err and "onnx" in captured.err  # progress lines
    data = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert data["models"]["tiny"]["artifacts"]["onnx"]["status"] == "ok"


def test_paddle_conversion_makes_no_network_call(write_zoo, tmp_path, monkeypatch):
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    zoo = load_zoo(write_zoo(models=[tiny_entry(formats=["eager", "paddle"])]))
    manifest = convert_zoo(zoo, RunOptions(out=tmp_path / "a"))
    assert manifest.models["tiny"].artifacts["paddle"].ok
    assert attempts == []
