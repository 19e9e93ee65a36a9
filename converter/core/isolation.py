"""Run one step (a conversion, a runtime's cell) in a worker process with a time and a memory limit.

A segfault, an abort, a hang or an out-of-memory kill in a runtime becomes a WorkerResult that says which,
and the caller goes on. Workers fork from a fork server that imported the heavy libraries once, so each
step starts in well under a second and never inherits a parent's running thread pools.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

PRELOAD = ["torch", "torchvision", "onnx", "onnxruntime", "numpy"]
OOM_MARKERS = ("can't allocate memory", "bad_alloc", "Unable to allocate", "out of memory", "MemoryError")
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MEMORY_MB = 8192
WAIT_TICK_S = 1.0  # how often on_wait hears while a worker runs


@dataclass(frozen=True)
class Limits:
    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB  # address space of the worker; 0: no limit (GPU drivers need one off)


@dataclass
class WorkerResult:
    ok: bool
    value: Any = None
    failure: str = ""  # exception, timeout, signal, exit, out-of-memory
    detail: str = ""
    traceback: str = ""

    @property
    def message(self) -> str:
        return self.detail if self.failure == "exception" else f"{self.failure}: {self.detail}"


# Importing Paddle sets OMP_NUM_THREADS=1 in os.environ when it is unset. A fork server started after that
# passes it on to every worker, where numpy's BLAS then runs on one core: measured here, the timing canary read
# 105 instead of 215 GFLOP/s in the workers, so every cell waited for a full speed it could never reach. The
# fork server starts with these variables as they were when this module was first imported.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_startup_threads = {name: os.environ.get(name) for name in THREAD_VARIABLES}
_context = None
_preloads: list[str] = []  # what callers asked the fork server to import as well (see preload)
_context_lock = threading.Lock()


def _fork_server():
    global _context
    with _context_lock:  # conversions of several models start workers from several threads
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["converter.core.run_log"] + PRELOAD + _optional_preload() + _preloads)
            with environment_as(_startup_threads):
                multiprocessing.forkserver.ensure_running()
            _context = context
    return _context


@contextlib.contextmanager
def environment_as(values: dict[str, str | None]):
    """os.environ with these variables set (None: unset) for the length of the block, then as it was."""
    before = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            _set_variable(name, value)
        yield
    finally:
        for name, value in before.items():
            _set_variable(name, value)


def _set_variable(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def preload(*modules: str) -> None:
    """Import these modules (those installed) in the fork server too, so no worker imports them again: a worker
    that unpickles a job whose code imports half a second of modules pays it on every cell otherwise. Takes
    effect only before the first worker starts."""
    import importlib.util

    for name in modules:
        if name not in _preloads and importlib.util.find_spec(name.split(".")[0]) is not None:
            _preloads.append(name)


def _optional_preload() -> list[str]:
    import importlib.util

    return [name for name in ("paddle", "paddle.inference") if importlib.util.find_spec(name.split(".")[0])]


def run_isolated(function: Callable[..., Any], *args: Any, limits: Limits = Limits(),
                 on_wait: Callable[[], None] | None = None) -> WorkerResult:
    """function(*args) in a worker; function and args must pickle (module-level functions, plain data).
    `on_wait()` is called about every second while the worker runs (to show its progress)."""
    context = _fork_server()
    receiver, sender = context.Pipe(duplex=False)
    worker = context.Process(target=_child, args=(sender, function, args, limits.memory_mb, list(sys.path)),
                             daemon=True)
    worker.start()
    sender.close()
    try:
        if not _wait(receiver, limits.timeout_s, on_wait):
            _kill(worker)
            return WorkerResult(False, failure="timeout", detail=f"no result after {limits.timeout_s:g}s; worker killed")
        try:
            status, payload, trace = receiver.recv()
        except (EOFError, OSError):
            worker.join(10)
            return _died(worker)
        worker.join(10)
        if worker.is_alive():
            _kill(worker)
    finally:
        receiver.close()
    if status == "ok":
        return WorkerResult(True, value=payload)
    failure = "out-of-memory" if any(m in payload for m in OOM_MARKERS) else "exception"
    if failure == "out-of-memory":
        payload = f"{payload} (limit {limits.memory_mb} MiB)" if limits.memory_mb else payload
    return WorkerResult(False, failure=failure, detail=payload, traceback=trace)


def _wait(receiver, timeout_s: float, on_wait: Callable[[], None] | None) -> bool:
    """Whether a result arrived within timeout_s."""
    if on_wait is None:
        return receiver.poll(timeout_s)
    deadline = time.monotonic() + timeout_s
    while not receiver.poll(max(min(WAIT_TICK_S, deadline - time.monotonic()), 0)):
        if time.monotonic() >= deadline:
            return False
        on_wait()
    return True


def _child(sender, function, args, memory_mb: int, path: list[str]) -> None:
    sys.path += [entry for entry in path if entry not in sys.path]  # the fork server's is from when it started
    if memory_mb:
        limit = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        value = function(*args)
        message = ("ok", value, "")
    except BaseException as exc:  # everything goes back to the parent as data
        from .errors import WorkbenchError

        text = " ".join(str(exc).split()) or type(exc).__name__
        prefix = "" if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: "  # ours already say what
        message = ("error", f"{prefix}{text}"[:2000], traceback.format_exc())
    try:
        sender.send(message)
    except BaseException as exc:  # e.g. an unpicklable result
        sender.send(("error", f"cannot return the result: {type(exc).__name__}: {exc}", traceback.format_exc()))
    sender.close()
    os._exit(0)  # skip interpreter teardown: some runtimes crash in their atexit handlers


def _died(worker) -> WorkerResult:
    code = worker.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (likely the out-of-memory killer)" if -code == signal.SIGKILL else ""
        return WorkerResult(False, failure="signal", detail=f"worker killed by {name}{hint}")
    return WorkerResult(False, failure="exit", detail=f"worker exited with code {code} before returning a result")


def _kill(worker) -> None:
    worker.kill()
    worker.join(10)
