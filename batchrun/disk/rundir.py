"""The directory a run keeps beside its output (the engine's checkpoint, a label run's work
folder): created before anything is sent, or refused with a message instead of a traceback.

It holds every prompt and answer, and what it holds decides what is written where, so it is
private: this user's own, 0700, holding only files and directories this user made. In a shared
directory another user could otherwise leave one (or a symlink in one) to read the run or to
have it overwrite any file of this user.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import ConfigError


def make_run_dir(path: Path, out: Path) -> bool:
    """`open_run_dir`, for a caller that reaches the directory's files by their paths.

    :returns: whether it was created (``False``: it was there already).
    :raises ConfigError: as `open_run_dir`.
    """
    fd, created = open_run_dir(path, out)
    os.close(fd)
    return created


def open_run_dir(path: Path, out: Path) -> tuple[int, bool]:
    """Create ``path``, the run's directory beside its output ``out``, or check the one there;
    either way it is made 0700, and kept open.

    The descriptor is the directory that was checked: in a directory others can write in (and
    that is not sticky), they could rename it away and put theirs at its name afterwards, so its
    files are reached through the descriptor (``dir_fd``), not through ``path``.

    An existing one that other users could write in is refused, not repaired: it may hold what
    they left for this run to write into. One they could only read is made private: no one
    else could have put anything in it.

    :returns: the descriptor (the caller closes it), and whether the directory was created.
    :raises ConfigError: the output's directory does not exist, or ``path`` cannot be created
        in it (no permission, a read-only filesystem, a file where a directory should be), or
        the one there is a symlink, another user's, writable by others, or holds a symlink,
        a special file or another user's file.
    """
    try:
        path.mkdir(mode=0o700)
        created = True
    except FileExistsError:
        created = False
    except FileNotFoundError:
        raise ConfigError(f"{out.parent}: output directory does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create: {exc.strerror}") from None
    if path.is_symlink():
        raise ConfigError(f"{path} is a symlink; batchrun keeps a run's files only in a directory of this "
                          "user's own: remove the link and run again")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open: {exc.strerror}") from None
    try:
        _make_private(path, fd, created=created)
    except BaseException:
        os.close(fd)
        raise
    return fd, created


def _make_private(path: Path, fd: int, *, created: bool) -> None:
    info = os.fstat(fd)
    if info.st_uid != os.getuid():
        raise ConfigError(f"{path} belongs to another user (uid {info.st_uid}); it would hold every prompt "
                          "and answer, so batchrun uses only its own: remove it or choose another -o")
    if info.st_mode & 0o022 and not created:
        raise ConfigError(f"{path} is writable by other users, who may have left files in it for this run to "
                          f"write into; if no one else could have, chmod 700 {path} and run again; otherwise "
                          "remove it")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.fchmod(fd, 0o700)
    with os.scandir(fd) as entries:
        for entry in entries:
            found = entry.stat(follow_symlinks=False)
            if not (stat.S_ISREG(found.st_mode) or stat.S_ISDIR(found.st_mode)) or found.st_uid != info.st_uid:
                raise ConfigError(f"{path / entry.name} is not a file or directory of this user's, so not one "
                                  "batchrun wrote; remove it (or the whole directory) and run again")
