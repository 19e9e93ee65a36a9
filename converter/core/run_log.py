"""The run's log file: our own debug lines and the libraries' Python warnings (torch's deprecations, Paddle's
ccache notice, x2paddle's), kept out of the console. The fork server imports this module before any library, so
the warnings those imports raise in every worker reach the same file ($PARITY_LOG_FILE)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

LOG_VARIABLE = "PARITY_LOG_FILE"
HANDLER_NAME = "parity-log-file"


def log_to_file(path: str | Path, fresh: bool = False) -> None:
    """Send every record that reaches the root logger, warnings included, to `path` (`fresh`: emptied first, as
    the run's own process does; its workers append). One file per process: another path replaces it."""
    path = Path(path).resolve()
    root = logging.getLogger()
    for old in [handler for handler in root.handlers if handler.get_name() == HANDLER_NAME]:
        if Path(old.baseFilename) == path and not fresh:
            return
        root.removeHandler(old)
        old.close()
    handler = _FolderMakingFileHandler(path, mode="w" if fresh else "a", encoding="utf-8", delay=True)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s"))
    root.addHandler(handler)
    logging.captureWarnings(True)


class _FolderMakingFileHandler(logging.FileHandler):
    """Opens (and makes the folder of) its file at the first record: a run that stops on a usage error before
    logging anything leaves no folder behind."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def stop_logging_to_file() -> None:
    root = logging.getLogger()
    for old in [handler for handler in root.handlers if handler.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    logging.captureWarnings(False)
    os.environ.pop(LOG_VARIABLE, None)

if os.environ.get(LOG_VARIABLE):  # in the fork server: before torch, Paddle and the others are imported
    log_to_file(os.environ[LOG_VARIABLE])
