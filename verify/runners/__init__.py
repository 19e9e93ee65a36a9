"""The runtimes. Each is a module here implementing Runner, registered by name (with the artifacts and devices
it takes) in converter.core.vocabulary: adding a runtime is one module and one registration line."""
from __future__ import annotations

from converter.core.registry import load_object
from converter.core.vocabulary import REFERENCE, RUNTIMES

from .base import Availability, DeviceUnavailable, LoadRequest, Runner, RunnerError


def registered_runners() -> dict[str, type[Runner]]:
    """Every registered runtime's Runner class, by name; the verifier's default collaborators."""
    return {name: load_object(spec.runner) for name, spec in RUNTIMES.items()}


__all__ = ["REFERENCE", "Availability", "DeviceUnavailable", "LoadRequest", "Runner", "RunnerError",
           "registered_runners"]
