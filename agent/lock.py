"""One owner per run folder: an exclusive ``fcntl.flock`` on ``<run_dir>/run.lock``, held for the
life of the process that runs (or resumes) the search.

The lock file holds the owner's pid, so a second process can say who has the folder. The kernel
drops the lock when the owner exits, however it exits (even ``kill -9``), so a stale file never
blocks a later ``--resume``. POSIX only (``fcntl``), like the rest of the harness.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["RunFolderLock", "RunFolderBusy", "RunFolderUnwritable", "LOCK"]

LOCK = "run.lock"


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder."""


class RunFolderUnwritable(RuntimeError):
    """The lock file cannot be created or opened for writing (read-only folder, permissions)."""


class RunFolderLock:
    """``acquire()`` takes the folder or raises; the lock lasts until ``release()`` or exit."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def holder(self) -> str:
        """The pid written by the current holder (``unknown`` when it cannot be read)."""
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def acquire(self) -> RunFolderLock:
        """Take the lock without waiting: :class:`RunFolderBusy` names the holder's pid,
        :class:`RunFolderUnwritable` the file and the OS's reason. The file is only written once
        the lock is ours, so a refused process changes nothing in the folder."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunFolderUnwritable(f"{self.path}: cannot open the lock file "
                                      f"({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(f"{self.path.parent} is in use by process {self.holder()} "
                                f"(it holds {self.path}); wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
