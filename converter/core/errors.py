"""Error types that say what went wrong; the CLIs turn them into one line and an exit code."""
from __future__ import annotations


class WorkbenchError(Exception):
    """Base for errors a user can act on: shown as one line, never as a traceback."""


class ZooError(WorkbenchError):
    """A zoo file that cannot be used: names the file, the model and the field."""

    def __init__(self, file: str, message: str, model: str | None = None, field: str | None = None):
        self.file, self.model, self.field, self.message = file, model, field, message
        where = [str(file)]
        if model is not None:
            where.append(f"model '{model}'")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join(where)}: {message}")


class ModelLoadError(WorkbenchError):
    """The model named in the zoo could not be built or its weights could not be loaded."""


class ConversionError(WorkbenchError):
    """An exporter ran but did not produce a usable artifact."""


def one_line(exc: BaseException, plain: bool = False) -> str:
    """An exception as one line: the errors of this module as they read (they are written for people), any other
    prefixed with its type (`ValueError: ...`); `plain` keeps any message as it reads."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if plain or type(exc).__module__ == __name__ else f"{type(exc).__name__}: {text}"
