"""The cell cache: what it keys on, what it gives back, and that a damaged entry is simply not found."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import verify.cells.cache
from verify.cells.cache import CellCache, cell_facts, cell_value, code_files
from verify.cells.timing import summarise

FEEDS = {"input": np.arange(12, dtype=np.float32).reshape(2, 6)}
PARTS = {"runner": "verify.runners:OnnxRuntimeRunner", "files": {"m/onnx/model.onnx": "ab12"}, "threads": 2}


def worker_value() -> dict:
    return {"output": {"logits": np.ones((2, 3), np.float32)}, "again": {"logits": np.ones((2, 3), np.float32)},
            "config": {"threads": 2, "precision": "fp32"}, "canaries": [190.0],
            "timings": [summarise(np.full(20, 0.004), batch=1), summarise(np.full(12, 0.02), batch=8)]}


def test_a_stored_cell_comes_back_as_the_worker_returned_it(tmp_path):
    cache = CellCache(tmp_path)
    key = cache.key("cell", PARTS, FEEDS)
    assert cache.load(key) is None
    cache.store(key, *cell_facts(worker_value()))
    value = cell_value(*cache.load(key))
    assert np.array_equal(value["output"]["logits"], np.ones((2, 3))) and value["config"]["precision"] == "fp32"
    assert value["timings"] == worker_value()["timings"] and value["canaries"] == []  # not today's readings
    assert value["cached"] and cache.hits == 1


def test_the_code_fingerprint_covers_every_source_of_the_workbench():
    """A cached cell must not outlive an edit of the code that measured it: the fingerprint reads the sources of
    verify/ and converter/ wherever the module sits in them."""
    files = code_files()
    assert Path(verify.cells.cache.__file__).resolve() in files
    assert any(path.parts[-2:] == ("converter", "zoo.py") for path in files)
    assert any(path.parts[-3:] == ("verify", "runners", "onnxruntime_runner.py") for path in files)


def test_the_key_changes_with_any_input_of_the_cell(tmp_path):
    cache = CellCache(tmp_path)
    key = cache.key("cell", PARTS, FEEDS)
    assert key == cache.key("cell", dict(PARTS), {"input": FEEDS["input"].copy()})
    assert key != cache.key("cell", {**PARTS, "files": {"m/onnx/model.onnx": "cd34"}}, FEEDS)  # other weights
    assert key != cache.key("cell", {**PARTS, "threads": 1}, FEEDS)
    assert key != cache.key("cell", PARTS, {"input": FEEDS["input"] + 1})  # other images
    assert key != cache.key("logits", PARTS, FEEDS)


def test_a_damaged_or_half_written_entry_is_not_found_and_off_finds_nothing(tmp_path):
    cache = CellCache(tmp_path)
    key = cache.key("cell", PARTS, FEEDS)
    cache.store(key, *cell_facts(worker_value()))
    (tmp_path / f"{key}.npz").write_bytes(b"not an npz")
    assert cache.load(key) is None
    cache.store(key, *cell_facts(worker_value()))
    (tmp_path / f"{key}.json").unlink()  # the JSON is written last: without it there is no entry
    assert cache.load(key) is None
    off = CellCache(None)
    off.store(key, *cell_facts(worker_value()))
    assert off.load(key) is None


def test_entries_unused_for_long_are_pruned(tmp_path):
    import os

    cache = CellCache(tmp_path)
    old, new = cache.key("cell", PARTS, FEEDS), cache.key("cell", {**PARTS, "threads": 1}, FEEDS)
    for key in (old, new):
        cache.store(key, *cell_facts(worker_value()))
    os.utime(tmp_path / f"{old}.json", (0, 0))
    cache.prune()
    assert cache.load(old) is None and cache.load(new) is not None
    assert not (tmp_path / f"{old}.npz").exists()


def test_an_entry_older_than_the_age_asked_for_is_not_found(tmp_path):
    cache = CellCache(tmp_path)
    cache.store("k", {"value": 1}, {})
    assert cache.load("k", max_age_s=3600)[0]["value"] == 1
    meta = tmp_path / "k.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "stored": "2026-01-01 00:00:00 UTC"}))
    assert cache.load("k", max_age_s=3600) is None
    assert cache.load("k")[0]["value"] == 1  # no age asked for: any age


def test_an_unchanged_inputs_file_is_copied_from_the_cache_and_a_changed_one_written(tmp_path, monkeypatch):
    import os

    import numpy as np

    import verify.plan.inputs as inputs

    kept, batch = tmp_path / "inputs", np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    inputs.save_inputs(tmp_path / "first.npz", {"input": batch}, ["a", "b", "c"], kept)
    compressed = []
    monkeypatch.setattr(inputs.np, "savez_compressed", lambda *a, **k: compressed.append(1) or np.savez(*a, **k))
    inputs.save_inputs(tmp_path / "again.npz", {"input": batch}, ["a", "b", "c"], kept)
    assert compressed == [] and (tmp_path / "again.npz").read_bytes() == (tmp_path / "first.npz").read_bytes()
    for changed, names in ((batch + 1, ["a", "b", "c"]), (batch, ["a", "b", "d"])):
        inputs.save_inputs(tmp_path / "changed.npz", {"input": changed}, names, kept)
        with np.load(tmp_path / "changed.npz") as saved:
            assert np.array_equal(saved["inputs"], changed) and saved["names"].tolist() == names
    files = sorted(kept.glob("*.npz"))
    assert len(compressed) == 2 and len(files) == 3
    os.utime(files[0], (0, 0))
    CellCache(tmp_path).prune()  # kept in the cache's folder, pruned with its entries
    assert sorted(kept.glob("*.npz")) == files[1:]
