"""A repair's zoo change, as a YAML snippet and written into the zoo file with the user's comments, order and quoting
kept (ruamel.yaml's round trip), atomically."""
from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from converter.core.files import atomic_write
from converter.core.errors import ZooError

Change = Mapping[str, Any]  # section -> field -> value, merged into one model's entry; or field -> value, replaced


def _yaml(text: str = ""):
    """A round-trip YAML (comments, key order, quoting and flow style survive) that indents as `text` does."""
    from ruamel.yaml import YAML
    from ruamel.yaml.util import load_yaml_guess_indent

    yaml = YAML()
    yaml.preserve_quotes = True
    if text:
        _, indent, sequence_dash = load_yaml_guess_indent(text)
        yaml.indent(mapping=indent - sequence_dash if sequence_dash else indent, sequence=indent,
                    offset=sequence_dash)
    yaml.width = 4096  # a flow mapping written over several lines comes back on one, never re-wrapped mid-way
    return yaml


def snippet(model: str, change: Change) -> str:
    """The change as the lines to put under the model's entry in the zoo's `models:` list."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    item = CommentedMap(name=model)
    for section, fields in change.items():
        if not isinstance(fields, Mapping):
            item[section] = CommentedSeq(fields) if isinstance(fields, (list, tuple)) else fields
            continue
        block = CommentedMap()
        for key, value in fields.items():
            if isinstance(value, (list, tuple)):
                value = CommentedSeq(value)
            block[key] = value
        item[section] = block
    out = io.StringIO()
    _yaml().dump([item], out)
    return out.getvalue()


def edited(text: str, model: str, change: Change, origin: str) -> str:
    """The zoo file's `text` with `change` merged into the model's entry (a section's other fields kept)."""
    yaml = _yaml(text)
    data = yaml.load(text)
    models = data.get("models") if hasattr(data, "get") else None
    item = next((m for m in models or () if hasattr(m, "get") and m.get("name") == model), None)
    if item is None:
        raise ZooError(origin, "models: no entry by this name to write the repair into", model=model)
    for section, fields in change.items():
        if not isinstance(fields, Mapping):  # a field of the entry itself: `formats` with a format swapped
            item[section] = list(fields) if isinstance(fields, (list, tuple)) else fields
            continue
        block = item.get(section)
        if block is not None and not hasattr(block, "get"):
            raise ZooError(origin, f"not a mapping: cannot add {sorted(fields)}", model=model, field=section)
        if block is None:
            item[section] = block = {}
        elif _shared(block, item, section):  # an anchor, an alias or a merge key: the change is this model's alone
            item[section] = block = dict(block)
        for key, value in fields.items():
            block[key] = list(value) if isinstance(value, tuple) else value
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _shared(block, item, section: str) -> bool:
    """Whether the model's `section` is also another's: an anchored mapping (aliases elsewhere are the same object),
    an alias, or a value the entry takes from a merge key (`<<: *defaults`)."""
    anchored = getattr(getattr(block, "anchor", None), "value", None) is not None
    own = getattr(item, "_ok", None)  # ruamel's own keys of a mapping, without those a merge key brings
    return anchored or (own is not None and section not in own)


def write_change(path: Path, model: str, change: Change) -> None:
    """Merge `change` into the model's entry of the zoo file at `path`, in place (all or nothing)."""
    atomic_write(path, edited(path.read_text(), model, change, str(path)))
