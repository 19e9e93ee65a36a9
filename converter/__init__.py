"""The converter: a zoo file in, every requested artifact and a manifest out.

Library API (what `python -m converter` calls): `load_zoo(path)`, then `convert(zoo, RunOptions(out=...))`,
which returns the Manifest. Imported lazily, so `import converter` stays cheap.
"""
from __future__ import annotations

__all__ = ["Manifest", "RunOptions", "convert", "load_zoo"]


def __getattr__(name: str):
    if name in ("convert", "RunOptions"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "load_zoo":
        from .zoo import load_zoo

        return load_zoo
    if name == "Manifest":
        from .manifest import Manifest

        return Manifest
    raise AttributeError(f"module 'converter' has no attribute '{name}'")
