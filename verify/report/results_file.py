"""A run's results as files in its report folder, `results.json` and `results.npz` (plain JSON and named arrays,
no pickle), so `python -m verify merge` can join shards that ran on other machines. The batch every runtime got
stays in `inputs/<model>.npz` and the prediction grid's images in `predictions/<model>.png`, where the report
keeps them: a merge copies those files as they are, so it never holds every model's images at once."""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from converter.core.errors import WorkbenchError
from converter.core.files import atomic_write
from converter.core.shards import Shard
from converter.zoo import ModelEntry, ZooError, entry_from_config

from ..results import ModelResult
from .markdown import inputs_file
from .plain import from_plain, to_plain

RESULTS_FILE, ARRAYS_FILE = "results.json", "results.npz"
FORMAT = 2


class ResultsFileError(WorkbenchError):
    """A results file that is missing, unreadable or of another format (a usage error: exit code 2)."""


@dataclass
class RunScope:
    """What a run covered, so a merge can tell whether its shards add up to the whole zoo."""

    shard: Shard | None = None  # None: not split
    zoo_models: list[str] = field(default_factory=list)  # every model the zoo file holds, in its order
    zoo_sha256: str = ""
    models: list[str] = field(default_factory=list)  # the models this run verified
    settings: dict[str, Any] = field(default_factory=dict)  # the options every shard of one run must share


@dataclass
class StoredRun:
    scope: RunScope
    results: list[ModelResult]
    entries: dict[str, ModelEntry]
    environment: dict
    provenance: dict
    left_out: str | None
    folder: Path
    baseline: dict = field(default_factory=dict)  # the performance gate's blocking lines and notes (VerifyRun's)


def write_results(folder: Path, scope: RunScope, results: list[ModelResult], entries: dict[str, ModelEntry],
                  environment: dict, provenance: dict, left_out: str | None, baseline: dict | None = None) -> None:
    """The arrays first and the JSON last, each replaced atomically: a folder with the JSON has its arrays."""
    arrays: dict[str, np.ndarray] = {}
    plain = {"format": FORMAT, "scope": asdict(scope), "provenance": provenance, "environment": environment,
             "left_out": left_out, "baseline": baseline or {},
             "entries": {name: entry.model_dump(mode="json") for name, entry in entries.items()},
             "results": [to_plain(replace(result, inputs=None, gallery={}, drawn_in=None, inputs_in=None), arrays)
                         for result in results]}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(folder / ARRAYS_FILE, buffer.getvalue())
    atomic_write(folder / RESULTS_FILE, json.dumps(plain, default=str))


def read_results(folder: Path) -> StoredRun:
    """A report folder's results; ResultsFileError naming the folder and what is wrong."""
    path = folder / RESULTS_FILE
    try:
        plain = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsFileError(f"{path}: no such file (not a report folder of `python -m verify`, or its run "
                               "did not finish)") from None
    except (OSError, ValueError) as exc:
        raise ResultsFileError(f"{path}: cannot be read: {exc}") from None
    if not isinstance(plain, dict) or plain.get("format") != FORMAT:
        found = plain.get("format") if isinstance(plain, dict) else None
        raise ResultsFileError(f"{path}: format {found!r}, this workbench reads format {FORMAT}")
    try:
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError) as exc:
        raise ResultsFileError(f"{folder / ARRAYS_FILE}: cannot be read: {exc}") from None
    try:
        results = [from_plain(ModelResult, item, arrays) for item in plain["results"]]
        scope = from_plain(RunScope, plain["scope"], arrays)
        entries = {name: entry_from_config(config, str(path)) for name, config in plain["entries"].items()}
    except (KeyError, TypeError, ValueError, ZooError) as exc:
        raise ResultsFileError(f"{path}: not a results file of this format: {exc}") from None
    for result in results:  # its files in this folder are copied as they are: not loaded, not drawn again
        result.drawn_in = str(folder)
        if (folder / inputs_file(result.model)).is_file():
            result.inputs_in = str(folder)
    return StoredRun(scope, results, entries, plain["environment"], plain["provenance"], plain["left_out"], folder,
                     plain.get("baseline") or {})
