"""Join the report folders of a zoo's shards (`--shard K/N`, one CI job each) into one report whose verdict is
decided again over every model. A merge refuses rather than pass on less: every shard 1..N once, all from one
zoo file, one workbench version and commit and one set of options, each holding every model of its share."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from converter.core.errors import WorkbenchError

from ..api import VerifyRun
from ..cells.environment import new_run_id
from ..judge.gate import decide, with_regressions
from .results_file import RunScope, StoredRun, read_results


class MergeError(WorkbenchError):
    """Shards that do not add up to one run of one zoo (a usage error: exit code 2)."""


SHARED = (("tool", "workbench version"), ("commit", "commit"))  # provenance every shard must share


def merge_runs(folders: list[Path], command: str | None = None, run_id: str = "") -> VerifyRun:
    """One run from the shards' report folders; MergeError naming the folder and what does not fit."""
    if not folders:
        raise MergeError("give the report folders of the shards to merge")
    shards = _checked_in_order([read_results(folder) for folder in folders])
    first = shards[0]
    by_model = {result.model: result for shard in shards for result in shard.results}
    order = sorted(by_model)  # as one run verifies them: in the manifest's order, by name
    results = [by_model[m] for m in order]
    entries = {name: entry for shard in shards for name, entry in shard.entries.items()}
    settings = first.scope.settings
    verdict = decide(results, entries, first.left_out, accept_partial=bool(settings.get("partial")))
    # each shard's performance gate (--baseline) against its own baseline: its lines count in the merged verdict
    baseline = {part: list(dict.fromkeys(line for shard in shards for line in shard.baseline.get(part, [])))
                for part in ("blocking", "notes")}
    verdict = with_regressions(verdict, baseline["blocking"], baseline["notes"])
    count = first.scope.shard.count
    provenance = {
        "run_id": run_id or new_run_id(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **{key: first.provenance.get(key, "") for key, _ in SHARED},
        "command": command or "library call (verify.report.merge.merge_runs)",
        "merged_from": "; ".join(f"shard {s.scope.shard} run {s.provenance.get('run_id', '?')} ({s.folder})"
                                 for s in shards),
        "manifest": "each shard's own",
        "zoo": first.provenance.get("zoo", ""),
        "images": first.provenance.get("images", ""),
        "left_out": first.left_out or "nothing",
    }
    environment = dict(first.environment)
    environment["shards"] = (f"{count} shards; the machine above ran shard {first.scope.shard}, and each model's "
                             "timings are from the machine of its own shard: "
                             + "; ".join(f"{s.scope.shard}: {s.environment.get('cpu', '?')}, "
                                         f"{s.environment.get('threads', '?')} threads, models "
                                         + (", ".join(r.model for r in s.results) or "none")
                                         for s in shards))
    scope = replace(first.scope, shard=None, models=order)
    return VerifyRun(results, verdict, environment, entries, provenance, scope, baseline=baseline)


def _checked_in_order(shards: list[StoredRun]) -> list[StoredRun]:
    """The shards ordered 1..N, once each, in agreement; MergeError naming the first thing that does not fit."""
    for shard in shards:
        if shard.scope.shard is None:
            raise MergeError(f"{shard.folder}: a run of the whole zoo, not a shard (run with --shard K/N)")
    counts = {s.scope.shard.count for s in shards}
    if len(counts) > 1:
        raise MergeError("the shards split the zoo differently: "
                         + ", ".join(f"{s.folder} is {s.scope.shard}" for s in shards))
    count = counts.pop()
    seen: dict[int, Path] = {}
    for shard in shards:
        index = shard.scope.shard.index
        if index in seen:
            raise MergeError(f"shard {index}/{count} given twice: {seen[index]} and {shard.folder}")
        seen[index] = shard.folder
    missing = [f"{k}/{count}" for k in range(1, count + 1) if k not in seen]
    if missing:
        given = ", ".join(f"{k}/{count}" for k in sorted(seen))
        raise MergeError(f"shard {', '.join(missing)} missing (given: {given}): a merge without every shard would "
                         "pass on less than the zoo")
    shards = sorted(shards, key=lambda s: s.scope.shard.index)
    first = shards[0]
    for shard in shards[1:]:
        for key, what in SHARED:
            if shard.provenance.get(key) != first.provenance.get(key):
                raise MergeError(f"{shard.folder}: {what} {shard.provenance.get(key)!r}, but {first.folder} has "
                                 f"{first.provenance.get(key)!r}: shards must come from one workbench")
        if (shard.scope.zoo_sha256, shard.scope.zoo_models) != (first.scope.zoo_sha256, first.scope.zoo_models):
            raise MergeError(f"{shard.folder}: another zoo file than {first.folder}'s (sha256 "
                             f"{shard.scope.zoo_sha256[:12]} against {first.scope.zoo_sha256[:12]})")
        changed = sorted(key for key in set(shard.scope.settings) | set(first.scope.settings)
                         if shard.scope.settings.get(key) != first.scope.settings.get(key))
        if changed:
            raise MergeError(f"{shard.folder}: run with other options than {first.folder} ({', '.join(changed)})")
    for shard in shards:
        expected = _share(shard.scope)
        missing = [m for m in expected if m not in shard.scope.models]
        if missing:
            raise MergeError(f"{shard.folder}: shard {shard.scope.shard} did not verify {', '.join(missing)} "
                             "of its share of the zoo (were they converted in its artifacts folder?)")
        strays = [m for m in shard.scope.models if m not in expected]
        if strays:
            raise MergeError(f"{shard.folder}: shard {shard.scope.shard} verified {', '.join(strays)}, which "
                             "are not in its share of the zoo")
    return shards


def _share(scope: RunScope) -> list[str]:
    """The models a shard must verify: its hash share of the zoo (of the --models asked for, if any)."""
    return scope.shard.select(scope.settings.get("models") or scope.zoo_models)
