"""The verifier: the same inputs through every runtime, compared with the PyTorch reference, judged by the gate.

Library API (what `python -m verify` calls): `run(VerifyOptions(...))` returns a VerifyRun (results, verdict,
environment); `write_reports(run, folder)` writes them. Imported lazily, so `import verify` stays cheap.
"""
from __future__ import annotations

__all__ = ["VerifyOptions", "VerifyRun", "run", "write_reports"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'verify' has no attribute '{name}'")
