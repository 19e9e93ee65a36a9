"""verify --repair: the mixed-precision search on callables, the zoo edit, and a tiny model that int8 and fp16 both
break, repaired with the fewest float32 nodes and proved by the gate."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from converter.core.errors import ZooError
from verify.repair.search import fewest_kept, rank_nodes, search
from verify.repair.zoo_edit import edited, snippet

ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    """Each reading moves time on by `step` seconds."""

    def __init__(self, step: float = 1.0):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


NODES = [f"n{i}" for i in range(20)]
HARMFUL = {"n3": 0.5, "n11": 0.3, "n17": 0.2}  # what each costs alone in reduced precision; the rest cost 0.001


def cost(node: str) -> float:
    return HARMFUL.get(node, 0.001)


def passes_with(needed: set[str]):
    def passes(kept: tuple[str, ...]) -> tuple[bool, str]:
        missing = needed - set(kept)
        return not missing, f"missing {sorted(missing)}" if missing else "within budget"
    return passes


def test_the_costliest_nodes_rank_first_and_the_fewest_that_pass_are_kept():
    result = search(NODES, cost, passes_with({"n3", "n11"}), seconds=1e6)
    assert [node for node, _ in result.ranking[:3]] == ["n3", "n11", "n17"]
    assert result.kept == ("n3", "n11") and result.fewest_proven and not result.note
    assert result.attempts[0].kept == 0 and not result.attempts[0].passed  # the artifact as it is: it must fail
    assert result.attempts[1].kept == 20 and result.attempts[1].passed  # every node: the upper bound
    assert any(a.kept == 1 and not a.passed for a in result.attempts)
    assert len(result.attempts) <= 2 + 5  # bisection over 20: log2(20) tries after the first two


def test_an_artifact_the_judge_passes_as_it_is_is_not_searched():
    result = search(NODES, cost, lambda kept: (True, "within budget"), seconds=1e6)
    assert result.kept is None and result.ranking == () and len(result.attempts) == 1
    assert "passes the artifact as it is" in result.note


def test_when_even_every_node_in_float32_fails_it_says_the_cause_is_not_the_precision():
    kept, attempts, note = fewest_kept(NODES, lambda kept: (False, "fails anyway"), deadline=1e6)
    assert kept is None and len(attempts) == 1 and "not the reduced precision's" in note


def test_the_time_bound_stops_the_ranking_and_the_bisection_and_says_so():
    clock = FakeClock(step=1.0)
    ranked, measured = rank_nodes(NODES, cost, deadline=5.0, clock=clock)
    assert measured < len(NODES) and [node for node, _ in ranked][measured:] == NODES[measured:]
    # the artifact as it is takes two clock readings; half the 12 s then ranks 5 nodes (one reading each); the
    # bisection has time for one try before the bound
    result = search(NODES, cost, passes_with({"n3"}), seconds=12.0, clock=FakeClock(step=1.0))
    assert [node for node, _ in result.ranking][:7] == ["n3", "n0", "n1", "n2", "n4", "n5", "n6"]
    assert len(result.kept) == 10 and result.kept[0] == "n3" and not result.fewest_proven
    assert result.note == ("ranked 5 of 20 nodes in the time allowed; stopped at the time limit: 10 nodes pass, "
                           "0 fail; the fewest lies between")


ZOO = """\
# our zoo
defaults:
  formats: [eager, onnx]   # deployed
models:
  - name: first
    arch: torchvision:resnet18   # a comment that must stay
    onnx: {opset: 17}
  - name: second
    arch: torchvision:resnet18
"""


def test_the_zoo_edit_keeps_comments_order_and_other_fields():
    change = {"onnx": {"int8_keep_fp32": ["/a/Conv", "Mul_2"]}}
    text = edited(ZOO, "first", change, "zoo.yaml")
    assert "# our zoo" in text and "# a comment that must stay" in text and "# deployed" in text
    data = yaml.safe_load(text)
    assert data["models"][0]["onnx"] == {"opset": 17, "int8_keep_fp32": ["/a/Conv", "Mul_2"]}
    assert [m["name"] for m in data["models"]] == ["first", "second"]
    second = yaml.safe_load(edited(ZOO, "second", change, "zoo.yaml"))["models"][1]
    assert second["onnx"] == {"int8_keep_fp32": ["/a/Conv", "Mul_2"]}
    assert text.splitlines()[4:6] == ZOO.splitlines()[4:6]  # the list keeps its indentation
    assert yaml.safe_load(snippet("first", change)) == [{"name": "first", **change}]
    with pytest.raises(ZooError, match="zoo.yaml: model 'third': models: no entry by this name"):
        edited(ZOO, "third", change, "zoo.yaml")


def test_the_zoo_edit_never_writes_through_an_anchor_or_a_merge_key_into_another_model():
    text = """models:
  - name: a
    onnx: &shared {opset: 17}
  - name: b
    onnx: *shared
  - name: c
    <<: {onnx: {opset: 18}}
"""
    change = {"onnx": {"int8_keep_fp32": ["n"]}}
    for model, expected in (("a", {"opset": 17, "int8_keep_fp32": ["n"]}), ("b", {"opset": 17, "int8_keep_fp32": ["n"]}),
                            ("c", {"opset": 18, "int8_keep_fp32": ["n"]})):
        models = {m["name"]: m for m in yaml.safe_load(edited(text, model, change, "zoo.yaml"))["models"]}
        assert models[model]["onnx"] == expected
        assert all("int8_keep_fp32" not in m["onnx"] for name, m in models.items() if name != model), models


TRAPS = {"name": "traps", "arch": "tests.tiny_models:precision_traps", "weights": "random", "num_classes": 10,
         "seed": 0, "input": {"shape": [3, 32, 32]}, "preprocess": {"resize": 36, "crop": 32},
         "formats": ["eager", "onnx"], "candidates": ["onnx_fp16", "onnx_int8"], "deployments": []}


def _cli(*args: str, cwd: Path, monkeypatch) -> int:
    """`python -m converter ...` or `python -m verify ...` run in this process (their main), from `cwd`."""
    from converter.__main__ import main as convert_main
    from verify.__main__ import main as verify_main

    monkeypatch.chdir(cwd)
    assert args[0] == "-m"
    return {"converter": convert_main, "verify": verify_main}[args[1]](list(args[2:]))


def _cells(report: Path) -> dict[str, str]:
    rows = [line.split(" | ") for line in report.read_text().splitlines() if line.startswith("| onnx_")]
    return {row[0].strip("| "): row[4] for row in rows if row[1] == "onnxruntime"}


def test_int8_and_fp16_outside_their_budget_are_repaired_and_the_written_zoo_passes_the_gate(tmp_path, monkeypatch,
                                                                                              capsys):
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text("trusted_modules: [tests.tiny_models]\n# kept\n" + yaml.safe_dump({"models": [TRAPS]}))
    verify = ("-m", "verify", "--report", "reports", "--no-timing", "--num-images", "12", "--runtimes",
              "onnxruntime", "--partial")
    assert _cli("-m", "converter", "zoo.yaml", cwd=tmp_path, monkeypatch=monkeypatch) == 0
    assert _cli(*verify, "--repair", "--write-zoo", cwd=tmp_path, monkeypatch=monkeypatch) == 0
    before = _cells(tmp_path / "reports" / "report.md")
    assert before["onnx_fp16"].startswith("FAIL") and before["onnx_int8"].startswith("FAIL")
    printed = capsys.readouterr().out
    assert "repair traps/onnx_fp16/onnxruntime: REPAIRED" in printed and "onnx.fp16_keep_fp32 written" in printed
    assert "repair traps/onnx_int8/onnxruntime: REPAIRED" in printed
    report = (tmp_path / "reports" / "report.md").read_text()
    assert "## Repairs" in report and "the gate says PASS" in report and "| nodes in float32 |" in report
    repairs = json.loads((tmp_path / "reports" / "repairs.json").read_text())
    assert {r["artifact"]: r["status"] for r in repairs} == {"onnx_fp16": "REPAIRED", "onnx_int8": "REPAIRED"}
    # the traps are two nodes each (docs of PrecisionTraps); a node fewer was tried and failed
    assert all(r["kept"] == 2 and r["kept"] < r["candidates"] for r in repairs), repairs
    assert all(any(not a["passed"] and a["kept"] == 1 for a in r["attempts"]) for r in repairs)
    # what was written is what the gate proved: the same edit of the same file, one change after the other
    written = zoo.read_text()
    assert "# kept" in written
    onnx = yaml.safe_load(written)["models"][0]["onnx"]
    assert {r["zoo_change"]["onnx"].popitem()[1] == onnx[f"{r['artifact'][5:]}_keep_fp32"] for r in repairs} == {True}
    assert not list(tmp_path.glob(".zoo.repair-*"))  # the proof's zoo beside the user's is gone


def test_write_zoo_needs_repair(tmp_path, monkeypatch, capsys):
    assert _cli("-m", "verify", "--report", "reports", "--write-zoo", cwd=tmp_path, monkeypatch=monkeypatch) == 2
    assert "--write-zoo writes what --repair found: add --repair" in capsys.readouterr().err


def test_a_failed_conversion_is_repaired_by_the_first_route_that_passes_the_gate(tmp_path, monkeypatch):
    """x2paddle's PyTorch tracer has no aten::flip: with `paddle.route: pytorch` the conversion fails; the search
    tries the paddle artifact's registered routes in order and the ONNX front end passes."""
    flipper = {"name": "flipper", "arch": "tests.tiny_models:flipping_cnn", "weights": "random", "num_classes": 10,
               "seed": 0, "input": {"shape": [3, 32, 32]}, "preprocess": {"resize": 36, "crop": 32},
               "formats": ["eager", "paddle", "paddle_dygraph"], "paddle": {"route": "pytorch"}, "deployments": []}
    (tmp_path / "zoo.yaml").write_text("trusted_modules: [tests.tiny_models]\n" + yaml.safe_dump({"models": [flipper]}))
    assert _cli("-m", "converter", "zoo.yaml", cwd=tmp_path, monkeypatch=monkeypatch) == 1  # paddle failed
    # the run's own verdict stands: the failed conversion blocks
    assert _cli("-m", "verify", "--report", "reports", "--no-timing", "--num-images", "4", "--runtimes",
                "paddle-inference,paddle-dygraph", "--partial", "--repair", cwd=tmp_path, monkeypatch=monkeypatch) == 1
    repairs = json.loads((tmp_path / "reports" / "repairs.json").read_text())
    assert len(repairs) == 1, repairs  # paddle_dygraph, made from paddle, is searched with it
    repair = repairs[0]
    assert repair["artifact"] == "paddle" and repair["status"] == "REPAIRED"
    assert [a["label"] for a in repair["attempts"]] == ["the zoo as it is, converted again", "x2paddle's ONNX front end"]
    assert not repair["attempts"][0]["passed"] and "conversion of paddle failed" in repair["attempts"][0]["detail"]
    assert repair["zoo_change"] == {"paddle": {"route": "onnx"}}
    assert "the gate says PASS" in repair["proof"] and "paddle-dygraph" in repair["runtime"]
    report = (tmp_path / "reports" / "report.md").read_text()
    assert "| route | result | seconds | detail |" in report and "route: onnx" in report


def _chain(blocks: int, width: int = 16, seed: int = 0):
    """An ONNX model of `blocks` x (MatMul, Add, Relu): 3 x `blocks` nodes, named by block."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, initializers, last = [], [], "x"
    for i in range(blocks):
        weight = (rng.normal(0, 1, (width, width)) / np.sqrt(width)).astype(np.float32)
        bias = rng.normal(0, 0.1, width).astype(np.float32)
        initializers += [numpy_helper.from_array(weight, f"w{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes += [helper.make_node("MatMul", [last, f"w{i}"], [f"m{i}"], name=f"matmul{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}"),
                  helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}")]
        last = f"r{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, width])],
                              [helper.make_tensor_value_info(last, TensorProto.FLOAT, [4, width])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_mismatch_in_one_node_of_a_200_node_model_reduces_to_a_repro_that_fails_on_its_own(tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from converter.zoo import Tolerance
    from verify.repair.reduce import ort_run, reference_values, smallest_repro, write_repro

    clean = _chain(67)  # 201 nodes
    assert len(clean.graph.node) >= 200
    feeds = {"x": np.random.default_rng(1).normal(0, 1, (4, 16)).astype(np.float32)}
    golden = reference_values(clean, feeds)  # the ONNX specification's values of every tensor
    broken = onnx.ModelProto()
    broken.CopyFrom(clean)
    bias = next(t for t in broken.graph.initializer if t.name == "b40")  # one node computes something else
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(0.05), "b40"))
    repro, line = smallest_repro(broken, golden, ort_run(), Tolerance())
    assert repro is not None, line
    assert repro.nodes == ("add40",) and repro.output == "a40" and len(repro.nodes) <= 3
    assert repro.max_abs_diff > repro.allowed and "1 node(s) (Add) reproduce the mismatch" in line
    script = write_repro(tmp_path / "repro", repro, "chain: add40")
    ran = subprocess.run([sys.executable, script.name], cwd=script.parent, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 1 and "FAIL" in ran.stdout, ran.stdout + ran.stderr  # on its own, with plain ORT
    assert len(script.read_text().splitlines()) <= 12
    # the clean model reduces to nothing: every node agrees with the specification
    nothing, why = smallest_repro(clean, golden, ort_run(), Tolerance())
    assert nothing is None and "agrees with the golden values on all" in why


def test_a_model_of_fixed_batch_1_runs_one_sample_at_a_time_and_detections_padding_is_not_a_difference(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from verify.repair.mixed_precision import distance, run_onnx

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "fixed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "fixed.onnx"))
    x = np.arange(-6, 6, dtype=np.float32).reshape(3, 4)
    assert np.array_equal(run_onnx(tmp_path / "fixed.onnx", {"x": x}, threads=1)["y"], np.maximum(x, 0))
    scores = np.array([[0.9, 0.5, -np.inf], [0.8, -np.inf, -np.inf]])
    assert distance({"scores": scores}, {"scores": scores.copy()}) == pytest.approx(0.0, abs=1e-12)
    moved = scores.copy()
    moved[0, 1] = 0.1
    assert 0 < distance({"scores": scores}, {"scores": moved}) < 1
    lost = scores.copy()
    lost[1, 0] = -np.inf  # a detection gone: not finite where the reference was
    assert distance({"scores": scores}, {"scores": lost}) == 2.0


def test_an_artifact_edited_after_conversion_is_repaired_by_converting_again_not_by_a_route(tmp_path, monkeypatch):
    """A route must not take the credit for a fix that converting again with the same zoo gives (the self-test's
    faults are of this kind: injected into the artifact after conversion). The failing ONNX Runtime cell also gets
    the repro step: ONNX Runtime agrees with the ONNX specification, so the graph itself is what differs."""
    from tests.conftest import tiny_entry
    from verify.selftest.faults import resign, scale_conv_weight

    import onnx

    from converter.manifest import read_manifest

    entry = tiny_entry("tiny", formats=["eager", "onnx"], deployments=[], onnx={"simplify": False})
    (tmp_path / "zoo.yaml").write_text("trusted_modules: [tests.tiny_models]\n" + yaml.safe_dump({"models": [entry]}))
    assert _cli("-m", "converter", "zoo.yaml", cwd=tmp_path, monkeypatch=monkeypatch) == 0
    root = tmp_path / "artifacts"
    path = root / read_manifest(root).models["tiny"].artifacts["onnx"].path
    model = onnx.load(str(path))
    scale_conv_weight(model, "/features/features.3/Conv", 1.01)
    onnx.save(model, str(path))
    resign(root, "onnx", "tiny")
    assert _cli("-m", "verify", "--report", "reports", "--no-timing", "--num-images", "4", "--runtimes",
                "onnxruntime", "--partial", "--repair", "--write-zoo", cwd=tmp_path, monkeypatch=monkeypatch) == 1
    (repair,) = json.loads((tmp_path / "reports" / "repairs.json").read_text())
    assert repair["status"] == "REPAIRED" and repair["zoo_change"] == {}
    assert [a["label"] for a in repair["attempts"]] == ["the zoo as it is, converted again"]
    assert "converting again with the same zoo passes" in repair["summary"] and "--force" in repair["summary"]
    assert repair["repro"].startswith("no runtime repro") and "exporter problem" in repair["repro"]
    assert yaml.safe_load((tmp_path / "zoo.yaml").read_text())["models"] == [entry]  # nothing to write


def test_a_route_is_one_zoo_field_or_one_format_swapped_and_a_route_already_set_is_skipped():
    from converter.core.vocabulary import ARTIFACTS
    from converter.zoo import entry_from_config
    from verify.repair.run import _route_change

    def routes(artifact: str, **fields) -> dict[str, tuple]:
        entry = entry_from_config({"name": "m", "arch": "torchvision:resnet18", **fields}, "zoo.yaml")
        return {route.label: _route_change(route, entry) for route in ARTIFACTS[artifact].routes}

    onnx = routes("onnx", formats=["eager", "onnx", "paddle"])
    assert onnx["opset 18"] == ({"onnx": {"opset": 18}}, {})
    assert onnx["torch.onnx's dynamo exporter instead"] == (
        {"formats": ["eager", "onnx_dynamo", "paddle"]}, {"onnx": "onnx_dynamo", "onnx_simplified": "onnx_dynamo_simplified"})
    assert routes("onnx", formats=["eager", "onnx", "onnx_dynamo"])["torch.onnx's dynamo exporter instead"] is None
    assert routes("onnx", onnx={"opset": 18})["opset 18"] is None  # already the zoo's
    explored = routes("onnx_dynamo", formats=["eager"], candidates=["onnx_dynamo"])
    assert explored["torch.onnx's TorchScript-based exporter instead"][0] == {"candidates": ["onnx"]}
    assert routes("torchscript", torchscript={"method": "script"})["torch.jit.script instead of trace"] is None


def test_the_legacy_exporters_baked_sequence_length_is_repaired_by_the_dynamo_exporter(tmp_path, monkeypatch):
    """Not a fault of ours: torch.onnx's TorchScript-based exporter writes the traced sequence length into the
    attention's Reshape (tests/test_any_model.py). No opset or batch setting helps; the dynamo exporter does, and
    the zoo change swaps the format."""
    text = {"name": "text", "arch": "tests.any_models:text_classifier", "weights": "random",
            "inputs": [{"name": "input_ids", "kind": "tokens", "shape": ["batch", "sequence"], "vocab": 100},
                       {"name": "attention_mask", "kind": "mask", "of": "input_ids", "shape": ["batch", "sequence"]}],
            "dynamic": {"sequence": [16, 8]}, "formats": ["eager", "onnx"], "onnx": {"simplify": False}}
    (tmp_path / "zoo.yaml").write_text("trusted_modules: [tests.any_models]\n" + yaml.safe_dump({"models": [text]}))
    assert _cli("-m", "converter", "zoo.yaml", cwd=tmp_path, monkeypatch=monkeypatch) == 0
    assert _cli("-m", "verify", "--report", "reports", "--no-timing", "--runtimes", "onnxruntime", "--partial",
                "--repair", "--write-zoo", cwd=tmp_path, monkeypatch=monkeypatch) == 1
    (repair,) = json.loads((tmp_path / "reports" / "repairs.json").read_text())
    labels = [a["label"] for a in repair["attempts"]]
    assert labels == ["the zoo as it is, converted again", "opset 18", "opset 16", "opset 13",
                      "fixed batch 1 instead of a dynamic batch", "torch.onnx's dynamo exporter instead"]
    assert [a["passed"] for a in repair["attempts"]] == [False] * 5 + [True]
    assert "PASS" in repair["proof"] and "sequence=8" in repair["proof"]
    assert repair["repro"].startswith("not reduced: the cell fails only at other sizes")
    assert yaml.safe_load((tmp_path / "zoo.yaml").read_text())["models"][0]["formats"] == ["eager", "onnx_dynamo"]


def test_a_models_repairs_add_up_to_one_change_and_an_onnx_route_holds_back_the_keep_lists():
    from verify.repair.run import _Progress, merged

    assert merged({"onnx": {"opset": 18}}, {"onnx": {"int8_keep_fp32": ["a"]}, "paddle": {"route": "onnx"}}) == {
        "onnx": {"opset": 18, "int8_keep_fp32": ["a"]}, "paddle": {"route": "onnx"}}
    assert merged({"formats": ["eager", "onnx"]}, {"formats": ["eager", "onnx_dynamo"]}) == {
        "formats": ["eager", "onnx_dynamo"]}
    progress = _Progress()
    progress.add({"paddle": {"route": "onnx"}}, [("paddle", "paddle-inference", "cpu")])
    progress.add({"onnx": {"fp16_keep_fp32": ["n"]}}, [])  # a keep list leaves the fp32 graph as it is
    assert not progress.graph_changed and progress.fixed == {("paddle", "paddle-inference", "cpu")}
    assert progress.on_top({"onnx": {"opset": 18}}) == {"paddle": {"route": "onnx"},
                                                        "onnx": {"fp16_keep_fp32": ["n"], "opset": 18}}
    progress.add({"onnx": {"opset": 18}}, [])
    assert progress.graph_changed
