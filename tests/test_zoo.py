"""Zoo validation: every bad zoo stops before any work with the file, model and field named."""
from __future__ import annotations

import pytest
import torch
import yaml

from converter.__main__ import main as converter_main
from converter.core.errors import ZooError
from converter.zoo import load_zoo
from tests.conftest import tiny_entry


def test_defaults_merge_key_by_key_and_paths_resolve(write_zoo, tmp_path):
    ckpt = tmp_path / "weights" / "w.pt"
    ckpt.parent.mkdir()
    torch.save({"x": torch.zeros(1)}, ckpt)
    path = write_zoo(
        models=[tiny_entry("a", preprocess={"resize": 40, "crop": 32}),
                tiny_entry("b", weights=None, checkpoint="weights/w.pt")],
        defaults={"preprocess": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
                  "tolerance": {"atol": 0.01}, "formats": ["eager", "onnx"]},
    )
    zoo = load_zoo(path)
    a, b = zoo.models
    assert a.preprocess.resize == 40 and a.preprocess.mean == [0.5, 0.5, 0.5]  # model keys win, others merge
    assert a.tolerance.atol == 0.01 and a.tolerance.rtol == 1e-3  # unset keys keep built-in defaults
    assert a.formats == ["eager", "onnx"]
    assert b.checkpoint == str(ckpt.resolve())  # relative to the zoo file, not the working directory
    assert zoo.select(["b"]) == (b,)


BAD_ZOOS = [
    # (description, zoo text or models list, expected model, expected field, message fragment)
    ("not yaml", "models: [a, b\n", None, None, "not valid YAML"),
    ("empty", "", None, None, "empty"),
    ("a list", "- name: a\n", None, None, "found a list"),
    ("unknown top key", "modles: []\n", None, "modles", "unknown key"),
    ("no models", "models: []\n", None, "models", "non-empty list"),
    ("unknown model key", [tiny_entry(colour="red")], "tiny", "colour", "unknown key"),
    ("typo in section", [tiny_entry(tolerance={"atoll": 1})], "tiny", "tolerance.atoll", "unknown key"),
    ("wrong type", [tiny_entry(seed="zero")], "tiny", "seed", "integer"),
    ("bool for int", [tiny_entry(num_classes=True)], "tiny", "num_classes", "integer"),
    ("zero shape", [tiny_entry(input={"shape": [3, 0, 32]})], "tiny", "input.shape.1", "greater than 0"),
    ("negative shape", [tiny_entry(input={"shape": [3, -32, 32]})], "tiny", "input.shape.1", "greater than 0"),
    ("short shape", [tiny_entry(input={"shape": [32, 32]})], "tiny", "input.shape", "at least 3"),
    ("crop vs shape", [tiny_entry(preprocess={"resize": 36, "crop": 30})], "tiny", "preprocess.crop", "does not match"),
    ("resize < crop", [tiny_entry(preprocess={"resize": 16, "crop": 32})], "tiny", "preprocess.resize", "smaller"),
    ("channel order", [tiny_entry(preprocess={"resize": 36, "crop": 32, "channel_order": "GBR"})],
     "tiny", "preprocess.channel_order", "'RGB' or 'BGR'"),
    ("zero std", [tiny_entry(preprocess={"resize": 36, "crop": 32, "std": [0.2, 0, 0.2]})],
     "tiny", "preprocess.std.1", "greater than 0"),
    ("atol negative", [tiny_entry(tolerance={"atol": -1.0})], "tiny", "tolerance.atol", "greater than or equal"),
    ("cosine > 1", [tiny_entry(tolerance={"min_cosine": 1.5})], "tiny", "tolerance.min_cosine", "less than or equal"),
    ("top1 > 1", [tiny_entry(tolerance={"top1": 2})], "tiny", "tolerance.top1", "less than or equal"),
    ("bad format", [tiny_entry(formats=["onnx", "tflite"])], "tiny", "formats.1",
     "unknown format 'tflite' (registered: eager, torchscript, onnx, onnx_dynamo, paddle, paddle_dygraph, torch_export, "
     "openvino, tvm, tensorrt, onnx_fp16, onnx_int8, tensorrt_fp16, tensorrt_int8)"),
    ("opset", [tiny_entry(onnx={"opset": 3})], "tiny", "onnx.opset", "greater than or equal"),
    ("bad name", [tiny_entry("../escape")], "../escape", "name", "pattern"),
    ("duplicate", [tiny_entry("a"), tiny_entry("a")], "a", "name", "duplicate"),
    ("unknown torchvision arch", [tiny_entry(arch="torchvision:resnet19")], "tiny", "arch", "did you mean resnet18"),
    ("unimportable factory", [tiny_entry(arch="no_such_pkg.models:net")], "tiny", "arch", "cannot import"),
    ("missing factory", [tiny_entry(arch="tests.tiny_models:nope")], "tiny", "arch", "no callable 'nope'"),
    ("arch without colon", [tiny_entry(arch="resnet18")], "tiny", "arch", "neither"),
    ("no weights", [tiny_entry(weights=None)], "tiny", "weights", "give weights"),
    ("missing checkpoint", [tiny_entry(weights=None, checkpoint="nope.pt")], "tiny", "checkpoint", "file not found"),
    ("uncached weights", [tiny_entry(arch="torchvision:resnet18", weights="IMAGENET1K_V1")],
     "tiny", "weights", "not in the local torch cache"),
    ("unknown weights", [tiny_entry(arch="torchvision:resnet18", weights="IMAGENET9K")],
     "tiny", "weights", "ResNet18_Weights.IMAGENET1K_V1"),
    ("classes vs num_classes", [tiny_entry(classes=["a", "b"])], "tiny", "classes", "2 class names"),
    ("defaults not a mapping", "defaults: [1]\nmodels: [{name: a}]\n", "defaults", None, "expected a mapping"),
    ("unknown default", "defaults: {arch: x}\nmodels: [{name: a}]\n", "defaults", "arch", "unknown key"),
    ("model not a mapping", "models: [resnet18]\n", "#1", None, "found a string"),
    ("python tag", "models: !!python/object/apply:os.system ['true']\n", None, None, "not valid YAML"),
]


@pytest.mark.parametrize("case", BAD_ZOOS, ids=[c[0] for c in BAD_ZOOS])
def test_bad_zoo_names_file_model_and_field(case, write_zoo):
    _, content, model, field, fragment = case
    path = write_zoo(text=content) if isinstance(content, str) else write_zoo(models=content)
    with pytest.raises(ZooError) as info:
        load_zoo(path)
    error = info.value
    assert error.file == str(path)
    assert (error.model, error.field) == (model, field)
    assert fragment in error.message
    assert "\n" not in str(error)


def test_checkpoint_source_rules(write_zoo, tmp_path):
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(scripted, str(tmp_path / "m.ts"))
    with pytest.raises(ZooError, match="TorchScript file runs code") as info:
        load_zoo(write_zoo(models=[tiny_entry(arch=None, weights=None, checkpoint="m.ts")]))
    assert info.value.field == "trust_pickle"
    with pytest.raises(ZooError, match="carries its own architecture"):
        load_zoo(write_zoo(models=[tiny_entry(weights=None, checkpoint="m.ts", trust_pickle=True)]))
    torch.save({"w": torch.zeros(1)}, tmp_path / "sd.pt")
    with pytest.raises(ZooError, match="either weights or checkpoint"):
        load_zoo(write_zoo(models=[tiny_entry(checkpoint="sd.pt")]))
    with pytest.raises(ZooError, match="required to load a state_dict") as info:
        load_zoo(write_zoo(models=[tiny_entry(arch=None, weights=None, checkpoint="sd.pt")]))
    assert info.value.field == "arch"


def test_oversized_zoo_is_refused_before_parsing(write_zoo):
    path = write_zoo(text="# " + "x" * (1 << 20) + "\nmodels: []\n")
    with pytest.raises(ZooError, match="at most"):
        load_zoo(path)


def test_cli_bad_zoo_is_one_line_and_exit_2(write_zoo, tmp_path, capsys):
    path = write_zoo(models=[tiny_entry(tolerance={"atol": "tight"})])
    code = converter_main([str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "Traceback" not in err
    assert str(path) in err and "model 'tiny'" in err and "field 'tolerance.atol'" in err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_cli_usage_errors_exit_2(write_zoo, tmp_path, capsys):
    path = write_zoo(models=[tiny_entry()])
    assert converter_main([str(path), "--models", "ghost", "--out", str(tmp_path / "o")]) == 2
    assert "ghost" in capsys.readouterr().err
    assert converter_main([str(path), "--formats", "tflite", "--out", str(tmp_path / "o")]) == 2
    assert converter_main([str(tmp_path / "missing.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


VERIFY_FIELD_ERRORS = [
    ("bad override key", {"tolerance_overrides": {"tflite": {"atol": 1}}}, "tolerance_overrides.tflite",
     "'tflite' is neither a runtime (torch, torch-bf16, torchscript, torch-export, onnxruntime, paddle-inference, "
     "paddle-inference-bf16, paddle-jit, paddle-dygraph, tensorrt, tvm, openvino, openvino-bf16) nor an artifact"),
    ("bad device", {"required": ["onnxruntime@tpu"]}, "required",
     "'onnxruntime@tpu': unknown device 'tpu' (registered: cpu, cuda, tensorrt)"),
    ("runtime that does not load the artifact", {"required": ["onnxruntime:paddle"]}, "required",
     "runtime 'onnxruntime' does not load 'paddle' (it loads onnx, onnx_simplified, onnx_dynamo, onnx_dynamo_simplified, "
     "onnx_fp16, onnx_int8)"),
    ("half a selector", {"tolerance_overrides": {"onnxruntime:": {"atol": 1}}}, "tolerance_overrides.onnxruntime:",
     "is not 'runtime', 'artifact', 'runtime:artifact', each optionally '@device'"),
    ("waiver without reason", {"allow_failures": [{"runtime": "paddle-jit"}]}, "allow_failures.0.reason", "required"),
    ("waiver without target", {"allow_failures": [{"reason": "known"}]}, "allow_failures.0", "name the runtime"),
    ("waiver unknown runtime", {"allow_failures": [{"runtime": "tflite", "reason": "known"}]},
     "allow_failures.0.runtime", "unknown runtime 'tflite' (registered: torch, torch-bf16, torchscript, torch-export,"),
    ("waiver unknown artifact", {"allow_failures": [{"artifact": "onnx_fp8", "reason": "known"}]},
     "allow_failures.0.artifact", "unknown artifact 'onnx_fp8'"),
    ("waiver mismatched pair", {"allow_failures": [{"runtime": "torch", "artifact": "onnx", "reason": "known"}]},
     "allow_failures.0.artifact", "runtime 'torch' does not load 'onnx'"),
    ("outputs repeated", {"outputs": ["logits", "logits"]}, "outputs", "twice"),
    ("logits not an output", {"outputs": ["scores", "embedding"], "logits_output": "logits"}, "logits_output",
     "'logits' is not one of the outputs"),
]


@pytest.mark.parametrize("case", VERIFY_FIELD_ERRORS, ids=[c[0] for c in VERIFY_FIELD_ERRORS])
def test_verification_fields_are_validated_against_the_registries(case, write_zoo):
    _, fields, field, fragment = case
    with pytest.raises(ZooError) as info:
        load_zoo(write_zoo(models=[tiny_entry(**fields)]))
    assert info.value.field == field and fragment in info.value.message, info.value.message
    assert "\n" not in str(info.value)


OVERRIDES = {
    "onnxruntime": {"atol": 1e-3},                        # a runtime
    "onnx_simplified": {"atol": 2e-3, "rtol": 5e-3},      # an artifact, whichever runtime runs it
    "onnxruntime@cuda": {"atol": 3e-3},                   # a runtime on a device
    "onnxruntime:onnx_simplified": {"min_cosine": 0.999},  # an artifact in one runtime
    "onnx_simplified@tensorrt": {"rtol": 7e-3},            # an artifact on a device
    "onnxruntime:onnx_simplified@cuda": {"atol": 4e-3},   # an artifact in one runtime on one device
}


@pytest.mark.parametrize("runtime,artifact,device,expected", [
    ("paddle-inference", "paddle", "cpu", {"atol": 1e-4, "rtol": 1e-3, "min_cosine": 0.99999}),  # no override
    ("onnxruntime", "onnx", "cpu", {"atol": 1e-3, "rtol": 1e-3, "min_cosine": 0.99999}),  # the runtime's
    ("onnxruntime", "onnx_simplified", "cpu", {"atol": 2e-3, "rtol": 5e-3, "min_cosine": 0.999}),  # artifact > runtime
    ("onnxruntime", "onnx", "cuda", {"atol": 3e-3, "rtol": 1e-3, "min_cosine": 0.99999}),  # device > runtime
    ("onnxruntime", "onnx_simplified", "tensorrt", {"atol": 2e-3, "rtol": 7e-3, "min_cosine": 0.999}),
    ("onnxruntime", "onnx_simplified", "cuda", {"atol": 4e-3, "rtol": 5e-3, "min_cosine": 0.999}),  # all three
], ids=["model", "runtime", "artifact+runtime:artifact", "runtime@device", "artifact@device",
        "runtime:artifact@device"])
def test_tolerance_overrides_most_specific_wins_key_by_key(write_zoo, runtime, artifact, device, expected):
    entry = load_zoo(write_zoo(models=[tiny_entry(tolerance_overrides=OVERRIDES)])).models[0]
    tolerance = entry.tolerance_for(runtime, artifact, device)
    assert {k: getattr(tolerance, k) for k in expected} == expected


def test_override_order_in_the_file_does_not_matter(write_zoo):
    reordered = dict(reversed(list(OVERRIDES.items())))
    entry = load_zoo(write_zoo(models=[tiny_entry(tolerance_overrides=reordered)])).models[0]
    assert entry.tolerance_for("onnxruntime", "onnx_simplified", "cuda").atol == 4e-3
    assert entry.tolerance_for("onnxruntime", "onnx", "cpu").atol == 1e-3


def test_required_selects_cells_by_runtime_artifact_and_device(write_zoo):
    entry = load_zoo(write_zoo(models=[tiny_entry(required=["onnx_simplified@cuda", "torch"])])).models[0]
    assert entry.is_required("onnxruntime", "onnx_simplified", "cuda")
    assert not entry.is_required("onnxruntime", "onnx", "cuda") and not entry.is_required("onnxruntime", "onnx", "tensorrt")
    assert entry.is_required("torch", "eager", "cuda") and entry.is_required("paddle-jit", "paddle", "cpu")


def test_zoo_limits_override_the_command_line(write_zoo):
    from converter.core.isolation import Limits

    entry = load_zoo(write_zoo(models=[tiny_entry(limits={"timeout_s": 30})])).models[0]
    cli = Limits(timeout_s=600, memory_mb=4096)
    assert entry.limits.over(cli) == Limits(timeout_s=30, memory_mb=4096)
    assert entry.limits.over(cli, gpu=True) == Limits(timeout_s=30, memory_mb=0)
    no_cap = load_zoo(write_zoo(models=[tiny_entry(limits={"memory_mb": 0})])).models[0]
    assert no_cap.limits.over(cli) == Limits(timeout_s=600, memory_mb=0)
    with pytest.raises(ZooError, match="greater than 0"):
        load_zoo(write_zoo(models=[tiny_entry(limits={"timeout_s": 0})]))


def test_a_zoo_cannot_run_the_standard_library(write_zoo, tmp_path, capsys):
    marker = tmp_path / "ran"
    path = write_zoo(models=[{"name": "evil", "arch": "subprocess:run", "weights": "random",
                              "arch_args": {"args": ["touch", str(marker)]}}])
    assert converter_main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "field 'arch': 'subprocess' is a standard-library module" in err and "\n" not in err.strip()
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_factories_outside_the_zoo_folder_need_the_users_trust(write_zoo, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PARITY_TRUSTED_MODULES")
    (tmp_path / "my_models.py").write_text("from tests.tiny_models import tiny_cnn as net\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    beside = load_zoo(write_zoo(models=[tiny_entry(arch="my_models:net")]))  # in the zoo's own folder: trusted
    assert beside.models[0].arch == "my_models:net"
    outside = [tiny_entry(arch="tests.tiny_models:tiny_cnn")]
    with pytest.raises(ZooError, match=r"module 'tests.tiny_models' \(found at .*tiny_models.py\) is outside the "
                                       r"zoo file's folder and not trusted") as info:
        load_zoo(write_zoo(models=outside))
    assert info.value.field == "arch"
    listed = write_zoo(text=yaml.safe_dump({"trusted_modules": ["tests"], "models": outside}), name="listed.yaml")
    assert load_zoo(listed).trusted_modules == ("tests",)  # a package trusts its submodules
    assert load_zoo(write_zoo(models=outside, name="flag.yaml"), trusted_modules=("tests.tiny_models",))
    assert converter_main([str(write_zoo(models=outside, name="cli.yaml")), "--out", str(tmp_path / "o"),
                           "--trust-module", "tests.tiny_models", "--formats", "eager"]) == 0
    with pytest.raises(ZooError, match="list of module names") as info:
        load_zoo(write_zoo(text=yaml.safe_dump({"trusted_modules": "tests", "models": outside}), name="bad.yaml"))
    assert info.value.field == "trusted_modules"


def test_a_factory_module_beside_the_zoo_imports_from_any_folder_without_pythonpath(tmp_path):
    import os
    import subprocess
    import sys

    zoo_folder = tmp_path / "project"
    zoo_folder.mkdir()
    (zoo_folder / "mynet.py").write_text(
        "import torch.nn as nn\n\n\ndef build(classes=3):\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes))\n")
    (zoo_folder / "zoo.yaml").write_text(yaml.safe_dump({"models": [
        {"name": "mine", "arch": "mynet:build", "weights": "random", "input": {"shape": [3, 32, 32]},
         "preprocess": {"resize": 36, "crop": 32}, "formats": ["eager"]}]}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment = {**os.environ, "PYTHONPATH": repository}  # the workbench itself, as an installed package would be
    done = subprocess.run([sys.executable, "-m", "converter", str(zoo_folder / "zoo.yaml"), "--out",
                           str(tmp_path / "out")], cwd=elsewhere, env=environment, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "manifest.json").exists()


def test_the_zoo_folder_comes_after_the_installed_packages(write_zoo, tmp_path):
    import sys

    (tmp_path / "numpy.py").write_text("raise RuntimeError('shadowed')\n")
    load_zoo(write_zoo(models=[tiny_entry()]))
    assert sys.path[-1] == str(tmp_path.resolve())
    assert sys.path.index(str(tmp_path.resolve())) > max(i for i, p in enumerate(sys.path) if "site-packages" in p)


def test_yaml_exponents_are_numbers(write_zoo):
    """YAML 1.1 reads 1e-4 as a string; the zoo reads it as the number everyone means."""
    path = write_zoo(text="models:\n  - {name: t, arch: 'tests.tiny_models:tiny_cnn', weights: random,\n"
                          "     input: {shape: [3, 32, 32]}, preprocess: {resize: 36, crop: 32},\n"
                          "     tolerance: {atol: 1e-4, rtol: 2E-3}, tolerance_overrides: {onnx: {atol: 5e-3}}}\n")
    entry = load_zoo(path).models[0]
    assert entry.tolerance.atol == 1e-4 and entry.tolerance.rtol == 2e-3
    assert entry.tolerance_for("onnxruntime", "onnx", "cpu").atol == 5e-3


@pytest.mark.parametrize("section,field", [("preprocess", "preprocess.mean"), ("deployment", "deployments.0.std")])
def test_0_255_mean_and_std_are_refused_with_the_0_1_values(write_zoo, section, field):
    if section == "preprocess":
        entry = tiny_entry(preprocess={"resize": 36, "crop": 32, "mean": [123.675, 116.28, 103.53],
                                       "std": [58.395, 57.12, 57.375]})
    else:
        entry = tiny_entry(deployments=[{"name": "cv", "library": "opencv", "std": [58.395, 57.12, 57.375]}])
    with pytest.raises(ZooError) as info:
        load_zoo(write_zoo(models=[entry]))
    assert info.value.field == field and "0-255 convention" in info.value.message
    assert "[0.485, 0.456, 0.406]" in info.value.message or "[0.229, 0.224, 0.225]" in info.value.message


def test_class_names_from_a_classes_file_and_folders_relative_to_the_zoo(write_zoo, tmp_path):
    (tmp_path / "names.txt").write_text("\n".join(f"class-{i}" for i in range(10)) + "\n\n")
    (tmp_path / "val").mkdir()
    (tmp_path / "cal").mkdir()
    zoo = load_zoo(write_zoo([tiny_entry(classes_file="names.txt", images="val",
                                         calibration={"images": "cal", "max_images": 4})]))
    entry = zoo.models[0]
    assert entry.class_names()[:2] == ["class-0", "class-1"] and len(entry.class_names()) == 10
    assert entry.images == str(tmp_path / "val") and entry.calibration.images == str(tmp_path / "cal")
    assert load_zoo(write_zoo([tiny_entry()])).models[0].class_names() is None  # random weights: indices


CLASS_AND_FOLDER_ERRORS = [
    ("count", {"classes_file": "names.txt"}, "a\nb\n", "classes_file", "2 class names in"),
    ("both", {"classes_file": "names.txt", "classes": [str(i) for i in range(10)]}, "a", "classes_file",
     "either classes or classes_file"),
    ("empty", {"classes_file": "names.txt"}, "\n\n", "classes_file", "one non-empty class name per line"),
    ("images", {"images": "missing"}, None, "images", "not a folder"),
    ("calibration", {"calibration": {"images": "missing"}}, None, "calibration.images", "not a folder"),
    ("budget", {"precision_tolerance": {"int8": {"min_cosine": 2, "top1": 0.5, "max_accuracy_drop": 1}}}, None,
     "precision_tolerance.int8.min_cosine", "less than or equal"),
]


@pytest.mark.parametrize("case", CLASS_AND_FOLDER_ERRORS, ids=[c[0] for c in CLASS_AND_FOLDER_ERRORS])
def test_class_names_folders_and_budgets_are_validated(case, write_zoo, tmp_path):
    _, fields, names, field, fragment = case
    if names is not None:
        (tmp_path / "names.txt").write_text(names)
    with pytest.raises(ZooError) as raised:
        load_zoo(write_zoo([tiny_entry(**fields)]))
    assert raised.value.field == field and raised.value.model == "tiny" and fragment in str(raised.value)


def test_torchvision_weights_name_their_classes_without_loading_them():
    from converter.zoo import ModelEntry

    entry = ModelEntry(name="r", arch="torchvision:resnet18", weights="IMAGENET1K_V1")  # not validated: no file
    names = entry.class_names()
    assert len(names) == 1000 and names[0] == "tench" and "Yorkshire terrier" in names


def test_an_entry_without_formats_deploys_full_precision_and_explores_the_rest(write_zoo):
    """The one-line zoo of issue 25: every format is built, the reduced-precision ones as candidates that never
    block; an entry that names its formats explores only the candidates it names."""
    plain, named, both = load_zoo(write_zoo([
        tiny_entry("plain"), tiny_entry("named", formats=["eager", "onnx", "onnx_int8"]),
        tiny_entry("both", formats=["eager", "onnx"], candidates=["onnx_fp16", "tvm"])])).models
    assert plain.candidates == ["onnx_fp16", "onnx_int8", "tensorrt_fp16", "tensorrt_int8"]
    assert "onnx_int8" not in plain.formats and {"onnx", "paddle", "openvino"} <= set(plain.formats)
    assert plain.is_deployed("onnxruntime", "onnx", "cpu") and not plain.is_deployed("onnxruntime", "onnx_int8", "cpu")
    assert not plain.is_deployed("torch-bf16", "eager", "cpu")  # a reduced-precision runtime setting is explored
    assert not plain.is_deployed("openvino-bf16", "openvino_ir", "cpu")
    assert named.candidates == [] and named.is_deployed("onnxruntime", "onnx_int8", "cpu")
    assert named.deploys_artifact("onnx_int8") and not plain.deploys_artifact("onnx_int8")
    assert both.built_formats == ["eager", "onnx", "onnx_fp16", "tvm"] and not both.is_deployed("tvm", "tvm", "cpu")
    bf16 = load_zoo(write_zoo([tiny_entry("r", required=["torch-bf16"])])).models[0]
    assert bf16.is_deployed("torch-bf16", "eager", "cpu")  # `required` deploys what it names


def test_candidates_survive_the_manifests_copy(write_zoo):
    from converter.zoo import entry_from_config

    entry = load_zoo(write_zoo([tiny_entry()])).models[0]
    copy = entry_from_config(entry.model_dump(mode="json"), "manifest")
    assert copy.candidates == entry.candidates and copy.formats == entry.formats


@pytest.mark.parametrize("fields,field,fragment", [
    ({"candidates": ["tflite"]}, "candidates.0", "unknown format 'tflite'"),
    ({"candidates": ["onnx_int8", "onnx_int8"]}, "candidates", "lists a format twice"),
    ({"candidates": ["eager"]}, "candidates", "eager is the reference"),
    ({"accept_accuracy_drop": -1}, "accept_accuracy_drop", "greater than or equal to 0"),
])
def test_bad_candidates_name_the_field(write_zoo, fields, field, fragment):
    with pytest.raises(ZooError) as raised:
        load_zoo(write_zoo([tiny_entry(**fields)]))
    assert raised.value.field == field and fragment in str(raised.value)
