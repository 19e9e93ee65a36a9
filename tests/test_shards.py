"""Zoos split into shards (--shard K/N) and joined again (python -m verify merge): the split, the results file,
and a merge that gives the single run's verdict, blocking lines and parity rows, or refuses."""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ElementTree

import numpy as np
import onnx
import pandas as pd
import pytest
import yaml
from onnx import numpy_helper

from converter.__main__ import main as convert_main
from converter.core.shards import Shard, parse_shard, shard_of
from converter.manifest import read_manifest
from tests.conftest import convert_tiny_zoo, private_copy, tiny_entry
from verify.__main__ import main as verify_main
from verify.judge.accuracy import Score
from verify.judge.compare import Comparison
from verify.cells.localize import Divergence
from verify.report.plain import from_plain, to_plain
from verify.judge.preprocessing import PreprocessingComparison
from verify.results import Cell, ModelResult, PreprocessingCheck
from verify.selftest.faults import resign
from verify.cells.timing import Timing

# with two shards, alpha and gamma fall in shard 1 and beta in shard 2 (the hash is fixed: see test_the_split)
MODELS = ("alpha", "beta", "gamma")
OPTIONS = ["--num-images", "4", "--no-timing", "--no-cache"]


def test_the_split_is_by_name_hash_fixed_everywhere_and_stable_when_models_are_added():
    assert [shard_of(m, 2) for m in MODELS] == [1, 2, 1]  # sha256 of the name: no salt, no position
    names = [f"model_{i}" for i in range(1000)]
    counts = [len(Shard(k, 4).select(names)) for k in range(1, 5)]
    assert sum(counts) == 1000 and min(counts) > 200  # every model in exactly one shard, about evenly
    before = {m: shard_of(m, 4) for m in names[:500]}
    assert all(shard_of(m, 4) == k for m, k in before.items())  # adding names[500:] moved none of them
    assert parse_shard(" 2/4 ") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    for bad in ("0/4", "5/4", "2", "a/b", "2/0", ""):
        with pytest.raises(ValueError, match="K/N"):
            parse_shard(bad)


def _sample_result() -> ModelResult:
    comparison = Comparison("FAIL", "cosine", 4, 0.5, 0.1, 0.97, 0.75, 1, 0.9, ("cosine 0.97",), ("cosine",))
    timing = Timing(1, 10, 1.0, 1.2, 1.3, 1.05, 0.9, 0.05, 0.95, 1.1, 3, 0.5, True, 0.01, 2)
    cell = Cell("m", "onnx", "onnxruntime", "cpu", "FAIL", "cosine 0.97", {"logits": comparison}, (timing,),
                {"threads": 2, "providers": ["CPU"], "path": "x"}, divergence=Divergence(True, "layer /fc", "/fc",
                max_abs_diff=math.inf, allowed=0.5),
                precision="int8", predictions=np.arange(20).reshape(4, 5), batch_invariant=True,
                accuracy=Score(4, {"top1": 0.5, "top5": 1.0}, ((0, 1, 2), (1, 1, 2))))
    check = PreprocessingCheck("m", "pil", "pil", "PASS", "ok", PreprocessingComparison("PASS", "ok", 0.1))
    return ModelResult("m", [cell], samples=4, gallery={3: np.ones((3, 2, 2), np.float32)}, labels=[0, 1, 0, 1],
                       classes=["a", "b"], preprocessing=[check], reference_probabilities=np.full((4, 5), 0.2),
                       built_with={"onnx": "torch.onnx"}, conversion_failures={"paddle": "x2paddle failed"})


def test_results_round_trip_through_json_and_arrays_without_pickle():
    arrays: dict[str, np.ndarray] = {}
    plain = json.loads(json.dumps(to_plain(_sample_result(), arrays)))
    back = from_plain(ModelResult, plain, arrays)
    original = _sample_result()
    assert back.cells[0].comparisons == original.cells[0].comparisons  # NaN-free fields compare equal
    assert back.cells[0].timings == original.cells[0].timings and back.cells[0].accuracy == original.cells[0].accuracy
    assert back.cells[0].divergence == original.cells[0].divergence and back.cells[0].config["providers"] == ["CPU"]
    np.testing.assert_array_equal(back.cells[0].predictions, original.cells[0].predictions)
    assert list(back.gallery) == [3] and back.gallery[3].shape == (3, 2, 2)  # int keys come back as ints
    assert back.preprocessing[0].detail == "ok" and back.conversion_failures == original.conversion_failures
    assert math.isnan(back.preprocessing[0].comparison.max_abs_diff)  # NaN and infinity survive JSON
    assert back.cells[0].divergence.max_abs_diff == math.inf
    plain["cells"][0]["surprise"] = 1
    with pytest.raises(ValueError, match="unknown fields"):
        from_plain(ModelResult, plain, arrays)
    with pytest.raises(ValueError, match="expected float, got .fast."):
        from_plain(Timing, {**to_plain(original.cells[0].timings[0], {}), "p50_ms": "fast"}, {})


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return convert_tiny_zoo(root, [tiny_entry(name, formats=["onnx"], seed=i) for i, name in enumerate(MODELS)])


@pytest.fixture(scope="module")
def runs(converted, tmp_path_factory):
    """One run of the whole zoo and one per shard, on the same artifacts with beta's ONNX tampered with; the
    shards' report folders merged."""
    root = private_copy(converted, tmp_path_factory.mktemp("runs"))
    artifacts = root / "artifacts"
    path = artifacts / read_manifest(artifacts).models["beta"].artifacts["onnx"].path
    model = onnx.load(str(path))
    target = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * np.float32(1.05), target.name))
    onnx.save(model, str(path))
    resign(artifacts, "onnx", model="beta")
    common = ["--artifacts", str(artifacts), "--zoo", str(root / "zoo.yaml"), *OPTIONS]
    codes = {"single": verify_main([*common, "--report", str(root / "single")])}
    for k in (1, 2):
        codes[f"shard{k}"] = verify_main([*common, "--report", str(root / f"shard{k}"), "--shard", f"{k}/2"])
    codes["merged"] = verify_main(["merge", str(root / "shard1"), str(root / "shard2"), "--report",
                                   str(root / "merged"), "--history", str(root / "merged.sqlite")])
    return root, codes


def _parity(folder) -> pd.DataFrame:
    return pd.read_csv(folder / "parity.csv").drop(columns=["run_id"])


def test_two_shards_merged_give_the_single_runs_verdict_failures_and_rows(runs):
    root, codes = runs
    assert codes == {"single": 1, "shard1": 0, "shard2": 1, "merged": 1}  # beta (shard 2) blocks
    single, merged = (json.loads((root / name / "summary.json").read_text()) for name in ("single", "merged"))
    assert merged["verdict"] == single["verdict"] == "BLOCKED"
    assert merged["blocking"] == single["blocking"] and merged["waived"] == single["waived"]
    assert any(line.startswith("beta/onnx/onnxruntime@cpu: FAIL") for line in merged["blocking"])
    assert merged["failing_cells"] == single["failing_cells"] and merged["cells"] == single["cells"]
    pd.testing.assert_frame_equal(_parity(root / "merged"), _parity(root / "single"))
    assert list(pd.read_csv(root / "merged" / "parity.csv").model.unique()) == list(MODELS)  # a single run's order
    shard1 = pd.read_csv(root / "shard1" / "parity.csv")
    assert set(shard1.model) == {"alpha", "gamma"}

    def cases(name):
        suites = ElementTree.parse(root / name / "junit.xml").getroot()
        return sorted((case.get("classname"), case.get("name"), tuple(child.tag for child in case))
                      for case in suites.iter("testcase"))
    assert cases("merged") == cases("single")
    # the history: the shards' runs as shards beside the artifacts, the merge as one run of the whole zoo
    from verify.history.store import HistoryStore

    shards = HistoryStore(root / "artifacts" / "history.sqlite")
    assert [kind for _, _, kind, *_ in shards.runs()] == ["run", "shard", "shard"]
    recorded = HistoryStore(root / "merged.sqlite").load("last")
    assert recorded.kind == "merged" and recorded.run_id == merged["provenance"]["run_id"]
    assert not recorded.passed and {cell.model for cell in recorded.cells} == set(MODELS)
    merged_md = (root / "merged" / "report.md").read_text()
    assert "merged_from: shard 1/2 run " in merged_md and "shard 2/2 run " in merged_md
    assert merged["provenance"]["run_id"] in merged_md
    grids = [root / f"shard{shard_of(m, 2)}" / "predictions" / f"{m}.png" for m in MODELS]
    assert all(grid.is_file() for grid in grids)  # copied from the shard that drew it, not drawn again
    assert [(root / "merged" / "predictions" / grid.name).read_bytes() for grid in grids] == [
        grid.read_bytes() for grid in grids]
    stored = json.loads((root / "shard1" / "results.json").read_text())
    assert all(result["gallery"] == {} for result in stored["results"])  # the images stay in the grid's PNG
    for model in MODELS:  # the batch every runtime got, carried over from the shard that ran the model
        with np.load(root / "merged" / "inputs" / f"{model}.npz") as merged_inputs, \
                np.load(root / "single" / "inputs" / f"{model}.npz") as single_inputs:
            np.testing.assert_array_equal(merged_inputs["inputs"], single_inputs["inputs"])


def test_a_merge_refuses_shards_that_do_not_add_up(runs, tmp_path, capsys):
    root, _ = runs
    shard1, shard2 = root / "shard1", root / "shard2"

    def merge(*folders) -> int:
        capsys.readouterr()
        return verify_main(["merge", *map(str, folders), "--report", str(tmp_path / "out")])
    assert merge(shard1) == 2
    assert "shard 2/2 missing (given: 1/2)" in capsys.readouterr().err
    assert merge(shard1, shard1, shard2) == 2 and "given twice" in capsys.readouterr().err
    assert merge(shard1, root / "single") == 2 and "not a shard" in capsys.readouterr().err
    assert merge(shard1, tmp_path) == 2 and "results.json: no such file" in capsys.readouterr().err
    for key, value, message in (("commit", "0000000", "commit '0000000'"),
                                ("tool", "parity-workbench 0.0", "workbench version")):
        other = private_copy(shard2, tmp_path / f"other-{key}")
        stored = json.loads((other / "results.json").read_text())
        stored["provenance"][key] = value
        (other / "results.json").write_text(json.dumps(stored))
        assert merge(shard1, other) == 2 and message in capsys.readouterr().err
    other = private_copy(shard2, tmp_path / "other-zoo")
    stored = json.loads((other / "results.json").read_text())
    stored["scope"]["zoo_sha256"] = "f" * 64
    (other / "results.json").write_text(json.dumps(stored))
    assert merge(shard1, other) == 2 and "another zoo file" in capsys.readouterr().err
    stored = json.loads((shard2 / "results.json").read_text())
    stored["scope"]["settings"]["num_images"] = 8
    (other / "results.json").write_text(json.dumps(stored))
    assert merge(shard1, other) == 2 and "other options" in capsys.readouterr().err
    stored["scope"]["settings"]["num_images"] = 4
    stored["scope"]["models"] = []
    (other / "results.json").write_text(json.dumps(stored))
    assert merge(shard1, other) == 2 and "did not verify beta" in capsys.readouterr().err
    assert not (tmp_path / "out" / "report.md").exists()  # a refused merge writes no report


def test_the_converter_converts_only_its_shard_into_its_own_folder(converted, tmp_path, capsys):
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(yaml.safe_dump({"models": [tiny_entry(name, formats=["torchscript"]) for name in MODELS]}))
    assert convert_main([str(zoo), "--out", str(tmp_path / "a2"), "--shard", "2/2"]) == 0
    assert list(read_manifest(tmp_path / "a2").models) == ["beta"]
    assert "shard 2/2: 1 of the zoo's 3 models (beta)" in capsys.readouterr().err
    assert convert_main([str(zoo), "--out", str(tmp_path / "a3"), "--shard", "3/2"]) == 2
    assert "--shard: expected K/N with 1 <= K <= N" in capsys.readouterr().err
