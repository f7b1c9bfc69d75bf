"""Publishing a finished run: the checkpoint's files take their final names, as one step that a
crash cannot leave half done.

Renaming several files and removing a directory is not atomic, and a checkpoint whose ordered
output has already been renamed away looks like a run that lost its finished lines: the next
start would send them again. So before the first rename the checkpoint records that it is
committed — the file ``committed``, naming each file and its final name, fsynced together with
its directory. From then on the checkpoint's content is final and nothing reads it as a run to
resume: a start that finds the record does whatever steps are left (a rename whose source is
already gone was done) and sends nothing. Without the record the checkpoint is an unfinished
run, which resumes as one.

A published file leaves the private checkpoint, so it takes the permissions of a user's file
(`public_mode`) just before its rename. Every file written whole is written by `AtomicFile`.

The folder is worked on through a descriptor of it (``dir_fd``; opened here when the caller
holds none), not through its path: in a directory others can write in, the folder at that name
could be swapped for theirs after it was checked (`rundir.py`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

COMMITTED = "committed"
PRIVATE = 0o600
_MAX_LINKS = 40  # as the kernel: more links in a row are a loop


def commit(folder: Path, moves: Sequence[tuple[Path, Path]], *, dir_fd: int | None = None) -> None:
    """Record that ``folder`` is committed, then publish it (`complete`).

    :param moves: ``(file in folder, final path)``, in the order to rename them; a final path
        on the folder's filesystem (beside it, or where a symlink beside it points).
    :param dir_fd: the folder, held open (`rundir.open_run_dir`).
    :raises OSError: a step failed; what is done stays done, and `complete` does the rest.
    """
    if dir_fd is None:
        fd = open_dir(folder)
        try:
            commit(folder, moves, dir_fd=fd)
        finally:
            os.close(fd)
        return
    record = {"moves": [[source.name, final.name if final.parent == folder.parent else str(final.absolute())]
                        for source, final in moves]}
    write_atomically(folder / COMMITTED, orjson.dumps(record), private=True, dir_fd=dir_fd)
    os.fsync(dir_fd)  # the record must be on disk before the first rename can be
    complete(folder, dir_fd=dir_fd)


def complete(folder: Path, *, dir_fd: int | None = None) -> bool:
    """Finish publishing ``folder`` if it is committed: rename what is left, remove the folder.

    :param dir_fd: the folder, held open (`rundir.open_run_dir`).
    :returns: whether it was committed (and is now published and gone).
    :raises OSError: a step failed; the record stays, so a later call picks up from there.
    """
    if dir_fd is None:
        try:
            fd = open_dir(folder)
        except FileNotFoundError:
            return False
        try:
            return complete(folder, dir_fd=fd)
        finally:
            os.close(fd)
    try:
        with open(COMMITTED, "rb", opener=private_opener(dir_fd)) as f:
            record = orjson.loads(f.read())
    except FileNotFoundError:
        return False
    _publish(folder, dir_fd, record)
    return True


def _publish(folder: Path, fd: int, record: dict[str, Any]) -> None:
    finals = [(source, folder.parent / final) for source, final in record["moves"]]
    for source, final in finals:
        if _lexists(source, fd):
            _chmod(source, fd, public_mode(final))
            os.replace(source, final, src_dir_fd=fd)
    for parent in dict.fromkeys(final.parent for _, final in finals):
        fsync_dir(parent)
    for name in os.listdir(fd):
        if name != COMMITTED:
            _remove(name, fd)
    os.unlink(COMMITTED, dir_fd=fd)  # last: until here a crash leaves the steps to be completed
    if same_file(folder, fd):  # not a folder another user put at its name meanwhile
        shutil.rmtree(folder, ignore_errors=True)


def write_atomically(path: Path, data: bytes, *, private: bool = False, dir_fd: int | None = None) -> None:
    """Write ``path`` whole or not at all (`AtomicFile`).

    :raises OSError: nothing was written; the temporary file is gone too.
    """
    target = AtomicFile(path, private=private, dir_fd=dir_fd)
    try:
        target.file.write(data)
        target.commit()
    except BaseException:
        target.discard()
        raise


class AtomicFile:
    """A file written under a temporary name beside ``path``; `commit` makes it durable and
    renames it over ``path`` in one step, so ``path`` is never seen half-written.

    The temporary file is created anew, never opened through whatever is at its name: a file or
    symlink left there (by a crash, or planted by another user of the directory) is removed
    first, and one that reappears fails the write.

    :param private: a file in a private directory: created 0600, and a symlink at ``path`` is
        replaced. Otherwise a user's file: created as the umask allows (`public_mode`), and
        written through a symlink at ``path`` to its target (`link_target`).
    :param text: open for UTF-8 text with newlines as written (for the csv module), else binary.
    :param dir_fd: a private file in the directory held open as this descriptor (`rundir.open_run_dir`),
        reached through it by the name of ``path``, whatever its path names now.
    :raises OSError: the temporary file could not be created.
    """

    def __init__(self, path: Path, *, private: bool = False, text: bool = False, dir_fd: int | None = None) -> None:
        if dir_fd is not None and not private:
            raise ValueError("a file reached through its directory's descriptor is a private one")
        self.path = path if private else link_target(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._dir_fd = dir_fd
        self._unlink_tmp()
        fd = os.open(self._name(self.tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE,
                     dir_fd=dir_fd)
        try:
            os.fchmod(fd, PRIVATE if private else public_mode(self.path))
            self.file: IO[Any] = open(fd, "w", encoding="utf-8", newline="") if text else open(fd, "wb")  # noqa: SIM115
        except BaseException:
            os.close(fd)
            self._unlink_tmp()
            raise

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self._name(self.tmp), self._name(self.path), src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)

    def discard(self) -> None:
        with contextlib.suppress(OSError):  # closing flushes what is being thrown away: a full disk
            self.file.close()
        self._unlink_tmp()

    def _name(self, path: Path) -> Path | str:
        """How to reach ``path``: by its name in the directory held open, else by its path."""
        return path if self._dir_fd is None else path.name

    def _unlink_tmp(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._name(self.tmp), dir_fd=self._dir_fd)


def private_file(path: str, flags: int) -> int:
    """The opener (``open(path, mode, opener=private_file)``) of a file in a private directory: never
    through a symlink, and created 0600."""
    return os.open(path, flags | os.O_NOFOLLOW, PRIVATE)


def private_opener(dir_fd: int) -> Callable[[str, int], int]:
    """`private_file` for the files of a directory held open: ``open(name, mode, opener=...)``
    with a file's name (an absolute path would not be looked up in the directory)."""

    def opener(name: str, flags: int) -> int:
        return os.open(name, flags | os.O_NOFOLLOW, PRIVATE, dir_fd=dir_fd)

    return opener


def open_dir(path: Path) -> int:
    """A descriptor of the directory ``path``, never through a symlink at its name.

    :raises OSError: none there, a symlink (ELOOP), not a directory.
    """
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)


def public_mode(path: Path) -> int:
    """The permissions of a user's file published at ``path``: those of the file it replaces, else
    what the umask leaves of 0666, as a shell redirection would create it."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        # Reading the umask means setting it: meanwhile it is the strict 077, so a file another
        # thread creates in between can only come out more private than asked, never less.
        umask = os.umask(0o077)
        os.umask(umask)
        return 0o666 & ~umask


def link_target(path: Path) -> Path:
    """Where writing a user's file at ``path`` lands: ``path``, or if it is a symlink, the file it
    points to (through each link in turn), as a shell redirection writes through one.

    A link is followed only if this user or the owner of its directory made it, as the kernel
    follows links in a shared directory: another user's link there could aim this user's output
    at any of their files.

    :raises OSError: a link of another user (EPERM), or a loop of links (ELOOP).
    """
    for _ in range(_MAX_LINKS):
        try:
            info = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return path
        if not stat.S_ISLNK(info.st_mode):
            return path
        if info.st_uid not in (os.getuid(), os.stat(path.parent).st_uid):
            raise PermissionError(errno.EPERM, f"a symlink of another user (uid {info.st_uid}), not followed",
                                  str(path))
        path = path.parent / os.readlink(path)
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))


def fsync_dir(path: Path) -> None:
    """Make the renames and removals in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def same_file(path: Path, fd: int) -> bool:
    """Whether ``path`` names the very file (or directory) held open as ``fd``, not a link to it."""
    try:
        here, held = os.lstat(path), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _chmod(name: str, dir_fd: int, mode: int) -> None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _remove(name: str, dir_fd: int) -> None:
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
