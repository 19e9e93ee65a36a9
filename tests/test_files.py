"""Files written whole: readable by others as a plain open() would make them, and never half-written."""
from __future__ import annotations

import os
import stat

import pytest

from converter.core import files
from converter.core.files import atomic_write


def test_an_atomically_written_file_has_the_mode_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = atomic_write(tmp_path / "report.md", "# report")
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~files.UMASK
    assert written.stat().st_mode & stat.S_IROTH or files.UMASK & 0o004  # a CI job's reader can open it


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = atomic_write(tmp_path / "summary.json", "old")

    def broken(fd):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
