"""Which zoo entry verifies each model: the zoo file's current one, checked against what was converted."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from converter.core.files import file_sha256
from converter.manifest import Manifest
from converter.zoo import NOT_BUILD_INPUTS, ModelEntry, entry_from_config, load_zoo


@dataclass
class ResolvedEntry:
    entry: ModelEntry
    stale: str | None = None  # why the artifacts no longer match the zoo entry


class ResolvedEntries(dict[str, ResolvedEntry]):
    """Model name -> its resolved entry, and which zoo they were resolved against: its models, in order, and
    its sha256 (the manifest's when the zoo file is gone)."""

    zoo_models: list[str]
    zoo_sha256: str


def resolve_entries(manifest: Manifest, zoo_path: Path | None, origin: str,
                    trusted_modules: tuple[str, ...] = ()) -> ResolvedEntries:
    """The zoo file (given, or the one the manifest names, when it still exists) supplies tolerances, waivers
    and preprocessing; the manifest's copy is used for models the zoo no longer lists or when it is gone."""
    path = zoo_path or Path(manifest.zoo.get("path", ""))
    zoo = load_zoo(path, trusted_modules, find_factories=False) if zoo_path is not None or path.is_file() else None
    current = {m.name: m for m in zoo.models} if zoo else {}
    resolved = ResolvedEntries()
    if zoo:
        resolved.zoo_models, resolved.zoo_sha256 = list(current), file_sha256(path)
    else:
        resolved.zoo_models, resolved.zoo_sha256 = list(manifest.models), manifest.zoo.get("sha256", "")
    for name, record in manifest.models.items():
        converted = entry_from_config(record.config, origin)
        entry = current.get(name)
        if entry is None:
            resolved[name] = ResolvedEntry(converted)
            continue
        before, now = converted.model_dump(), entry.model_dump()
        changed = sorted(k for k in now if k not in NOT_BUILD_INPUTS and now[k] != before.get(k))
        recorded = record.source.checkpoint_sha256 if record.source else None
        if entry.checkpoint and recorded and Path(entry.checkpoint).is_file() \
                and file_sha256(Path(entry.checkpoint)) != recorded:
            changed.append("checkpoint file content")
        stale = (f"the zoo entry changed since conversion ({', '.join(changed)}): re-run the converter"
                 if changed else None)
        resolved[name] = ResolvedEntry(entry, stale)
    return resolved
