"""What the two command lines share: limit flags, list options, logging, and the start-up safety check."""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path

from .checkpoints import unsafe_load_forced
from .isolation import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, Limits
from .run_log import LOG_VARIABLE, log_to_file
from .shards import Shard, parse_shard

# Exit codes both commands share: 1 means "failed" for the converter and "blocked" for the verifier.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 128 + 2  # the shell's convention for a process ended by SIGINT (Ctrl-C)


def add_limit_arguments(parser: argparse.ArgumentParser, unit: str) -> None:
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds per {unit} before its worker is killed (default: {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--memory-limit-mb", type=int, default=DEFAULT_MEMORY_MB,
                        help=f"address-space limit per {unit}'s worker, MiB; 0: none (default: {DEFAULT_MEMORY_MB})")


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust-module", action="append", default=[], metavar="MODULE",
                        help="a module (or package) outside the zoo file's folder whose factories may build "
                             "models, as the zoo's trusted_modules; repeatable")


class UsageError(Exception):
    """The command line cannot run as given: one line for the user, exit code 2."""


def add_shard_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shard", metavar="K/N",
                        help="only shard K of N: the models whose name hash falls in it, the same split in the "
                             "converter and the verifier on every machine (for a CI job matrix; join the shards' "
                             "reports with `python -m verify merge`)")


def shard_option(text: str | None) -> "Shard | None":
    if text is None:
        return None
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise UsageError(f"--shard: {exc}") from None


def split_list(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def registered_list(flag: str, value: str | None, known: Iterable[str]) -> list[str] | None:
    """A comma-separated flag whose every item must be a registered name; UsageError names the others."""
    items, known = split_list(value), list(known)
    unknown = [item for item in items or [] if item not in known]
    if unknown:
        raise UsageError(f"{flag}: unknown {unknown} (choose from {', '.join(known)})")
    return items


HANDLER_NAME = "parity-workbench"


# the Pythons the pinned wheels exist for and are tested together on (pyproject's requires-python says the same;
# this catches a checkout run with another interpreter, which pip never saw)
SUPPORTED_PYTHONS = ((3, 11), (3, 12), (3, 13))


def python_problem(version: tuple[int, int]) -> str | None:
    """Why this tool cannot run on Python `version`, or None."""
    if version in SUPPORTED_PYTHONS:
        return None
    supported = ", ".join(f"{major}.{minor}" for major, minor in SUPPORTED_PYTHONS)
    why = {(3, 10): ": onnxruntime, numpy and pandas at their pinned versions have no wheel for it",
           (3, 14): ": paddlepaddle at its pinned version has no wheel for it"}.get(version, "")
    return (f"Python {version[0]}.{version[1]}: this tool needs Python {supported}, the versions its pinned torch, "
            f"paddlepaddle and x2paddle are tested on{why}; create the venv with one of them")


def start(args: argparse.Namespace, loggers: tuple[str, ...], fmt: str, log_file: Path | None = None) -> Limits:
    """Quiet the libraries, log our own loggers to stderr, refuse unsafe settings; the workers' limits.
    With `log_file`, our debug lines and every Python warning (here and in the workers) go to that file; the
    console shows the warnings only with --verbose."""
    problem = python_problem(sys.version_info[:2])
    if problem:
        raise UsageError(problem)
    verbose = args.verbose
    os.environ.setdefault("GLOG_minloglevel", "2")  # Paddle's C++ INFO logs drown the progress lines
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.set_name(HANDLER_NAME)
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in loggers:  # x2paddle and Paddle log chattily through the root logger: leave it alone
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == HANDLER_NAME]:
            logger.removeHandler(old)  # called again in one process (the self-test): one handler, today's stderr
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    if log_file is not None:
        os.environ[LOG_VARIABLE] = str(log_file.resolve())  # before the fork server starts: its workers log there
        log_to_file(log_file, fresh=True)
        for name in loggers:
            logging.getLogger(name).setLevel(logging.DEBUG)  # the file gets every line; the console its level
    warned = logging.getLogger("py.warnings")
    for old in [h for h in warned.handlers if h.get_name() == HANDLER_NAME]:
        warned.removeHandler(old)
    if verbose:
        warned.addHandler(handler)
    elif log_file is None:
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")  # "jit is deprecated"
        warnings.filterwarnings("ignore", message="No ccache found")  # Paddle's extension builder, unused
    refusal = unsafe_load_forced()
    if refusal:
        raise UsageError(refusal)
    if args.timeout <= 0 or args.memory_limit_mb < 0:
        raise UsageError("--timeout must be positive and --memory-limit-mb at least 0 (0: no limit)")
    return Limits(timeout_s=args.timeout, memory_mb=args.memory_limit_mb)


class StatusLine:
    """One line on a terminal's stderr that says what runs now, rewritten in place, cleared before other output.
    Silent when stderr is not a terminal (a CI log would keep every rewrite)."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.shown = False
        self.lock = threading.Lock()  # models verified side by side tell it from several threads

    def __call__(self, text: str) -> None:
        if self.live:
            width = max(shutil.get_terminal_size((100, 24)).columns - 1, 20)
            with self.lock:
                self.stream.write("\r" + text[:width] + "\033[K")
                self.stream.flush()
                self.shown = True

    def clear(self) -> None:
        with self.lock:
            if self.shown:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self.shown = False


def console_verbose(logger: str) -> bool:
    """Whether start() set the console up for --verbose (debug lines and tracebacks)."""
    return any(handler.get_name() == HANDLER_NAME and handler.level == logging.DEBUG
               for handler in logging.getLogger(logger).handlers)
