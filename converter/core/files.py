"""Files written whole or not at all, and their identity."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def atomic_write(path: Path, data: str | bytes) -> Path:
    """Write to a temporary file beside `path`, fsync it, then rename it over `path`: a reader (or a machine
    that lost power) sees the old file or the new one, never a half-written one. The file gets the mode a plain
    open() would give it (mkstemp's 0600 would hide reports from the CI job or the colleague that reads them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            os.fchmod(handle.fileno(), 0o666 & ~UMASK)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """A temporary folder beside `folder` to write into, which then replaces `folder`: a reader never sees a
    half-written folder. Where the writing fails, the temporary folder is removed and `folder` is left as it was."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    os.chmod(staging, 0o777 & ~UMASK)  # as a plain mkdir would make it, not mkdtemp's 0700
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: set it straight back (at import, before any thread)
    os.umask(mask)
    return mask


UMASK = _umask()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class FolderBusy(Exception):
    """Another run holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: Path, holder: str):
    """Hold `folder`'s lock file (`.parity.lock`, an flock: released when this process ends, however it ends) for
    the block. FolderBusy, saying who holds it, when another process does: two runs must not interleave their
    files in one folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".parity.lock"
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise FolderBusy(f"{folder}: another run is writing this folder ({handle.read().strip() or 'unknown'}); "
                             "wait for it to end, or give this run another folder") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{holder}, pid {os.getpid()}")
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def kept_bytes(kept: Path | None, make: Callable[[], bytes]) -> bytes:
    """The file `kept` holds (touched: in use, so the verifier's cache prune keeps it), else make() and keep it
    there. A file named by a digest of what it is made from (a chart, an inputs file) is made once; a cache this
    user cannot read or write is passed by: the bytes are made instead, and not kept."""
    try:
        if kept is not None and kept.is_file():
            data = kept.read_bytes()
            os.utime(kept)
            return data
    except OSError:
        pass
    data = make()
    try:
        if kept is not None:
            atomic_write(kept, data)
    except OSError:
        pass
    return data
