"""The converter end to end on tiny models: artifacts, manifest, recorded failures, atomic writes."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from converter.__main__ import main as converter_main
from converter.core.reference import load_reference
from converter.core.vocabulary import ARTIFACTS
from converter.exporters import ExportResult
from converter.exporters.tensorrt_engine import unavailable_here
from converter.manifest import file_sha256, read_manifest
from converter.pipeline import RunOptions, convert
from converter.zoo import load_zoo
from tests.conftest import tiny_entry


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Two tiny models through every format once; one fails x2paddle (aten::flip) for real."""
    root = tmp_path_factory.mktemp("convert")
    zoo_path = root / "zoo.yaml"
    zoo_path.write_text(yaml.safe_dump({"models": [
        tiny_entry("tiny"),
        tiny_entry("flipper", arch="tests.tiny_models:flipping_cnn", paddle={"route": "pytorch"}),
    ]}))
    out = root / "artifacts"
    code = converter_main([str(zoo_path), "--out", str(out)])
    return code, out, read_manifest(out)


def test_every_format_is_built_and_recorded(converted):
    code, out, manifest = converted
    tiny = manifest.models["tiny"]
    assert set(tiny.artifacts) == set(ARTIFACTS)
    for name, record in tiny.artifacts.items():
        if name.startswith("tensorrt_engine") and unavailable_here():  # no GPU: skipped with the reason, not failed
            assert record.skipped and record.error == unavailable_here()
            continue
        assert record.ok, (name, record.error)
        assert (out / record.path).is_file()
        assert record.source_sha256 == tiny.source.weights_sha256
        for rel, info in record.files.items():
            assert file_sha256(out / rel) == info.sha256 and (out / rel).stat().st_size == info.size
    assert tiny.artifacts["paddle"].path.endswith("model.json")
    paddle_folder = (out / tiny.artifacts["paddle"].path).parent
    assert paddle_folder.name.startswith("paddle-") and paddle_folder.parent.name == "tiny"
    assert {"model.json", "model.pdiparams"} <= {p.name for p in paddle_folder.iterdir()}
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
    assert not [p for p in (out / "flipper").iterdir() if p.name.startswith(("paddle", "."))]
    assert all(flipper[name].ok for name in ("eager", "torchscript", "onnx", "onnx_simplified"))


@pytest.mark.parametrize("artifact", ["onnx", "onnx_simplified"])
def test_onnx_has_a_dynamic_batch_axis(converted, artifact):
    _, out, manifest = converted
    record = manifest.models["tiny"].artifacts[artifact]
    session = ort.InferenceSession(str(out / record.path), providers=["CPUExecutionProvider"])
    reference = load_reference((out / manifest.models["tiny"].artifacts["eager"].path).parent)
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        (got,) = session.run(None, {"input": x})
        with torch.no_grad():
            expected = reference(torch.from_numpy(x)).numpy()
        assert got.shape == (batch, 10)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)


def test_eager_artifact_rebuilds_the_exact_reference(converted):
    _, out, manifest = converted
    module = load_reference((out / manifest.models["tiny"].artifacts["eager"].path).parent)
    from converter.models import weights_sha256

    assert weights_sha256(module) == manifest.models["tiny"].source.weights_sha256


def test_trace_check_failure_is_recorded(write_zoo, tmp_path):
    zoo = load_zoo(write_zoo(models=[tiny_entry("branchy", arch="tests.tiny_models:batch_dependent_cnn",
                                                formats=["eager", "torchscript", "onnx"],
                                                onnx={"simplify": False})]))
    manifest = convert(zoo, RunOptions(out=tmp_path / "a"))
    record = manifest.models["branchy"].artifacts["torchscript"]
    assert not record.ok and "TracingCheckError" in record.error
    assert "\n" not in record.error
    onnx_record = manifest.models["branchy"].artifacts["onnx"]
    assert onnx_record.ok  # the rest went on (the frozen branch is the verifier's to catch)
    assert onnx_record.details["ort_max_abs_diff"] > 0.1


def test_unreproducible_model_cannot_be_a_reference(write_zoo, tmp_path):
    zoo = load_zoo(write_zoo(models=[tiny_entry("counting", arch="tests.tiny_models:call_counting_cnn",
                                                formats=["eager", "onnx"])]))
    artifacts = convert(zoo, RunOptions(out=tmp_path / "a")).models["counting"].artifacts
    assert "does not reproduce the model's output" in artifacts["eager"].error
    assert artifacts["onnx"].error == "not attempted: needs eager, which failed"


def test_model_build_failure_fails_its_artifacts_only(write_zoo, tmp_path):
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "bad.pt")
    zoo = load_zoo(write_zoo(models=[tiny_entry("broken", weights=None, checkpoint="bad.pt", formats=["eager", "onnx"]),
                                     tiny_entry("fine", formats=["eager"])]))
    manifest = convert(zoo, RunOptions(out=tmp_path / "a"))
    broken = manifest.models["broken"]
    assert "does not fit the architecture" in broken.error
    assert [a.status for a in broken.artifacts.values()] == ["failed"] * 3
    assert manifest.models["fine"].artifacts["eager"].ok


def _half_writing_exporter(ctx):
    (ctx.out_dir / "model.onnx").write_bytes(b"\x08\x07half")
    raise RuntimeError("disk full")


def test_failed_export_leaves_no_half_written_artifact(write_zoo, tmp_path):
    out = tmp_path / "a"
    zoo = load_zoo(write_zoo(models=[tiny_entry(formats=["eager", "onnx"], onnx={"simplify": False})]))
    first = convert(zoo, RunOptions(out=out))
    assert first.models["tiny"].artifacts["onnx"].ok
    second = convert(zoo, RunOptions(out=out, force=True), exporters={"onnx": _half_writing_exporter})
    record = second.models["tiny"].artifacts["onnx"]
    assert record.status == "failed" and "disk full" in record.error and record.path is None
    # neither the half-written file nor the stale artifact of the first run remains under any name
    assert [p.name.split("-")[0] for p in (out / "tiny").iterdir()] == ["eager"]
    assert read_manifest(out).models["tiny"].artifacts["onnx"].status == "failed"


def test_unchanged_model_is_not_converted_again(write_zoo, tmp_path, capsys):
    path = write_zoo(models=[tiny_entry(formats=["eager", "onnx"])])
    out = tmp_path / "a"
    assert converter_main([str(path), "--out", str(out)]) == 0
    first = read_manifest(out)
    capsys.readouterr()
    assert converter_main([str(path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "0 converted, 3 up to date" in captured.out and "3 built (3 up to date), 0 failed" in captured.err
    again = read_manifest(out).models["tiny"].artifacts
    assert again["onnx"].files == first.models["tiny"].artifacts["onnx"].files
    assert all(record.cached for record in again.values())
    # a verification-only edit (tolerance) is still up to date; a build input (seed) is not
    zoo = yaml.safe_load(path.read_text())
    zoo["models"][0]["tolerance"] = {"atol": 0.01}
    path.write_text(yaml.safe_dump(zoo))
    assert converter_main([str(path), "--out", str(out)]) == 0
    assert "0 converted, 3 up to date" in capsys.readouterr().out
    zoo["models"][0]["seed"] = 5
    path.write_text(yaml.safe_dump(zoo))
    assert converter_main([str(path), "--out", str(out)]) == 0
    assert "3 converted, 0 up to date" in capsys.readouterr().out
    assert len([p for p in (out / "tiny").iterdir()]) == 3  # the old keyed folders were collected


def test_stale_keyed_folders_of_every_artifact_name_are_collected(tmp_path):
    """Artifact names with digits (onnx_int8, tensorrt_engine_fp16) are keyed folders too: a stale one goes."""
    from converter.manifest import ArtifactRecord, ModelRecord
    from converter.pipeline import KEY_CHARS, KEYED_FOLDER, _collect_garbage

    assert all(KEYED_FOLDER.match(f"{name}-{'0' * KEY_CHARS}") for name in ARTIFACTS)
    model_dir = tmp_path / "tiny"
    kept, stale = ["eager-" + "a" * KEY_CHARS, "onnx_int8-" + "b" * KEY_CHARS], []
    for name in ("onnx_int8", "onnx_fp16", "tensorrt_engine_int8", "eager"):
        stale.append(f"{name}-{'c' * KEY_CHARS}")
    for folder in kept + stale + ["notes"]:
        (model_dir / folder).mkdir(parents=True)
    record = ModelRecord(config={}, artifacts={
        "eager": ArtifactRecord("ok", path=f"tiny/{kept[0]}/model.pt"),
        "onnx_int8": ArtifactRecord("ok", path=f"tiny/{kept[1]}/model.onnx"),
    })
    _collect_garbage(model_dir, record, tmp_path)
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(kept + ["notes"])


def test_editing_the_factory_module_invalidates_the_key(tmp_path, monkeypatch):
    from converter.pipeline import source_key
    from converter.zoo import ModelEntry

    (tmp_path / "my_models.py").write_text("from tests.tiny_models import tiny_cnn as net\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = ModelEntry(name="m", arch="my_models:net", weights="random")
    before = source_key(entry, {"torch": "x"})
    assert source_key(entry, {"torch": "x"}) == before
    (tmp_path / "my_models.py").write_text("from tests.tiny_models import tiny_cnn as net  # edited\n")
    assert source_key(entry, {"torch": "x"}) != before
    assert source_key(entry, {"torch": "y"}) != before


def test_formats_subset_keeps_other_artifacts(write_zoo, tmp_path):
    out = tmp_path / "a"
    zoo = load_zoo(write_zoo(models=[tiny_entry(formats=["eager", "onnx"], onnx={"simplify": False})]))
    convert(zoo, RunOptions(out=out))
    again = convert(zoo, RunOptions(out=out, formats=["onnx"]))
    assert set(again.models["tiny"].artifacts) == {"eager", "onnx"}
    assert all(a.ok for a in again.models["tiny"].artifacts.values())


def test_a_format_dropped_from_the_zoo_leaves_the_manifest_and_the_disk(write_zoo, tmp_path):
    """The verifier verifies every artifact the manifest lists: one the zoo no longer asks for must not linger
    there (an int8 model dropped with its waiver would still block)."""
    out = tmp_path / "a"
    convert(load_zoo(write_zoo(models=[tiny_entry(formats=["eager", "onnx", "torchscript"], onnx={"simplify": False})])),
            RunOptions(out=out))
    folder = out / read_manifest(out).models["tiny"].artifacts["torchscript"].path
    assert folder.is_file()
    again = convert(load_zoo(write_zoo(models=[tiny_entry(formats=["eager", "onnx"], onnx={"simplify": False})])),
                    RunOptions(out=out))
    assert set(again.models["tiny"].artifacts) == set(read_manifest(out).models["tiny"].artifacts) == {"eager", "onnx"}
    assert not folder.parent.exists()
    assert all(a.cached for a in again.models["tiny"].artifacts.values())  # what is still asked for is kept


def test_cli_exit_0_summary_and_progress(write_zoo, tmp_path, capsys):
    path = write_zoo(models=[tiny_entry(formats=["eager", "onnx"])])
    assert converter_main([str(path), "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert "onnx_simplified" in captured.out and "ok" in captured.out  # summary table
    progress = captured.err.strip().splitlines()  # one line per model; the artifacts are in the table
    assert len(progress) == 1 and progress[0].split()[:4] == ["tiny", "3", "built,", "0"], progress
    data = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert data["models"]["tiny"]["artifacts"]["onnx"]["status"] == "ok"
    assert converter_main([str(path), "--out", str(tmp_path / "a"), "--verbose", "--force"]) == 0
    lines = [line.split() for line in capsys.readouterr().err.splitlines()]
    assert [line[:3] for line in lines if line[:1] == ["tiny"]] == [["tiny", name, "ok"] for name in
                                                                    ("eager", "onnx", "onnx_simplified")]


def test_a_waived_failure_passes_the_converter_and_is_not_retried_until_forced(write_zoo, tmp_path, capsys):
    waiver = [{"artifact": "paddle", "reason": "x2paddle has no aten::flip"}]
    path = write_zoo(models=[tiny_entry("flipper", arch="tests.tiny_models:flipping_cnn", formats=["eager", "paddle"],
                                        paddle={"route": "pytorch"}, allow_failures=waiver)])
    out = tmp_path / "a"
    assert converter_main([str(path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 converted, 0 up to date (not converted again), 0 failed, 1 failed as the zoo accepts (waived)" \
        in captured.out
    assert "waived" in captured.err
    record = read_manifest(out).models["flipper"].artifacts["paddle"]
    assert record.failure == "exception" and record.error.startswith("x2paddle 1.6 cannot convert aten::flip")
    assert "allow_failures" in record.error and "aten::flip" in record.error_detail  # the raw error is kept
    # unchanged inputs: the same failure is not tried again
    assert converter_main([str(path), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "0 converted, 1 up to date" in captured.out and "not retried; --force retries" in captured.err
    assert "waived  x2paddle 1.6 cannot convert aten::flip" in captured.err  # a failure found again is no 'cached'
    assert read_manifest(out).models["flipper"].artifacts["paddle"].cached
    # the waiver is not a build input: without it the cached failure fails the run, still without a retry
    zoo = yaml.safe_load(path.read_text())
    del zoo["models"][0]["allow_failures"]
    path.write_text(yaml.safe_dump(zoo))
    assert converter_main([str(path), "--out", str(out)]) == 1
    assert "FAILED" in capsys.readouterr().err
    assert converter_main([str(path), "--out", str(out), "--force"]) == 1
    forced = read_manifest(out).models["flipper"].artifacts["paddle"]
    assert not forced.cached and forced.seconds > 0


def test_known_failures_are_explained_with_a_next_step():
    from converter.exporters.hints import explain

    baked = ("ValueError: In user code: InvalidArgumentError: The 'shape' in ReshapeOp is invalid. The input tensor "
             "X's size along dim 0 must be equal to 1, but received [1, 2, 24, 28, 28]")
    assert "fixed the batch size" in explain("paddle", baked) and "dynamic_batch: false" in explain("paddle", baked)
    assert "torchscript: {method: script}" in explain("torchscript", "TracingCheckError: Tracing failed sanity checks!")
    unsupported = "UnsupportedOperatorError: Exporting the operator 'aten::roll' to ONNX opset version 17 is not supported."
    assert "no mapping for aten::roll" in explain("onnx", unsupported)
    assert "raise limits.timeout_s" in explain("onnx", "timeout: no result after 600s; worker killed")
    assert explain("onnx", "TracingCheckError") is None  # a hint applies to its own exporter only
    assert explain("eager", "ModelLoadError: checkpoint x: does not fit") is None


def _timed_onnx_exporter(ctx):
    """Stands in for the ONNX export: records when it ran (in the worker) and takes a while."""
    import time

    started = time.time()
    time.sleep(1.0)
    (ctx.out_dir / "model.onnx").write_bytes(b"not a model")
    return ExportResult("model.onnx", details={"started": started, "ended": time.time()})


@pytest.mark.parametrize("jobs, overlap", [(2, True), (1, False)])
def test_models_convert_at_once_with_jobs(write_zoo, tmp_path, jobs, overlap):
    entries = [tiny_entry(name, formats=["eager", "onnx"], onnx={"simplify": False}) for name in ("b", "a")]
    heard, busy = [], []

    def progress(model, artifact, record):  # never called from two threads at once
        busy.append(model)
        assert len(busy) == 1, busy
        heard.append((model, artifact))
        busy.pop()

    manifest = convert(load_zoo(write_zoo(models=entries)), RunOptions(out=tmp_path / "a", jobs=jobs),
                       progress=progress, exporters={"onnx": _timed_onnx_exporter})
    spans = sorted((m.artifacts["onnx"].details["started"], m.artifacts["onnx"].details["ended"])
                   for m in manifest.models.values())
    assert (spans[1][0] < spans[0][1]) == overlap, spans
    assert sorted(heard) == [(m, a) for m in ("a", "b") for a in ("eager", "onnx")]
    assert list(manifest.models) == ["b", "a"] and set(read_manifest(tmp_path / "a").models) == {"a", "b"}


def test_a_stopped_run_starts_no_further_export(write_zoo, tmp_path):
    import threading

    from converter.manifest import tool_versions
    from converter.pipeline import convert_model

    entry = load_zoo(write_zoo(models=[tiny_entry(formats=["eager", "onnx"])])).models[0]
    stopping = threading.Event()
    stopping.set()
    with pytest.raises(Exception, match="tiny"):
        convert_model(entry, RunOptions(out=tmp_path / "a"), None, tool_versions(), lambda *_: None, {}, stopping)
    assert not [p for p in (tmp_path / "a" / "tiny").iterdir()]


def test_jobs_must_be_a_positive_count(write_zoo, tmp_path, capsys):
    path = write_zoo(models=[tiny_entry(formats=["eager"])])
    with pytest.raises(SystemExit) as exit_info:
        converter_main([str(path), "--out", str(tmp_path / "a"), "--jobs", "0"])
    assert exit_info.value.code == 2 and "--jobs" in capsys.readouterr().err
