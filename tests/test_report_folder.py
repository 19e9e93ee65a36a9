"""One run's files in one report folder: a second run refuses while the first holds it; every file names its run."""
from __future__ import annotations

import pytest

from converter.core.files import FolderBusy, folder_lock
from verify.__main__ import main as verify_main
from verify.cells.environment import new_run_id


def test_a_held_folder_refuses_a_second_run_naming_the_first(tmp_path):
    with folder_lock(tmp_path / "reports", "verify run first"):
        with pytest.raises(FolderBusy, match=r"another run is writing this folder \(verify run first, pid \d+\)"):
            with folder_lock(tmp_path / "reports", "verify run second"):
                pass
    with folder_lock(tmp_path / "reports", "verify run third"):  # released when the first ended
        pass


def test_the_command_refuses_a_busy_report_folder_with_one_line(tmp_path, capsys):
    with folder_lock(tmp_path / "reports", "verify run other"):
        code = verify_main(["--report", str(tmp_path / "reports"), "--artifacts", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "another run is writing this folder" in err
    assert "\n" not in err and not (tmp_path / "reports" / "report.md").exists()


def test_run_ids_sort_by_time_and_differ():
    first, second = new_run_id(), new_run_id()
    assert first != second and len(first) == len("20261124T183000Z-0a1b2c") and first[:8].isdigit()
