"""One run per output at a time: an exclusive ``flock`` on a file in the checkpoint directory.

The kernel releases a ``flock`` when its holder dies, however it dies, so a lock left by a
killed run never blocks the next one: there is no stale lock to detect or break. (``flock``
is advisory and, on some network filesystems, local to one machine.)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import ConfigError


class RunLock:
    """Holds the lock from `acquire` until `release`."""

    def __init__(self, path: Path, what: Path) -> None:
        self._path = path
        self._what = what
        self._fd: int | None = None

    def acquire(self, dir_fd: int | None = None) -> None:
        """:param dir_fd: the lock's directory, held open: the lock is the file of its name there.
        :raises ConfigError: another live process holds the lock, or it cannot be opened (a
            symlink at its name is never followed: the pid would be written through it)."""
        try:
            fd = os.open(self._path if dir_fd is None else self._path.name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
                         0o600, dir_fd=dir_fd)
        except OSError as exc:
            raise ConfigError(f"{self._path}: cannot open the lock: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"another batchrun run (pid {holder}) is writing {self._what}; wait for it or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
