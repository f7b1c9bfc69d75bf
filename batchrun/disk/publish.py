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
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson

COMMITTED = "committed"
PRIVATE = 0o600
_MAX_LINKS = 40  # as the kernel: more links in a row are a loop


def commit(folder: Path, moves: Sequence[tuple[Path, Path]]) -> None:
    """Record that ``folder`` is committed, then publish it (`complete`).

    :param moves: ``(file in folder, final path)``, in the order to rename them; a final path
        on the folder's filesystem (beside it, or where a symlink beside it points).
    :raises OSError: a step failed; what is done stays done, and `complete` does the rest.
    """
    record = {"moves": [[source.name, final.name if final.parent == folder.parent else str(final.absolute())]
                        for source, final in moves]}
    write_atomically(folder / COMMITTED, orjson.dumps(record), private=True)
    fsync_dir(folder)  # the record must be on disk before the first rename can be
    complete(folder)


def complete(folder: Path) -> bool:
    """Finish publishing ``folder`` if it is committed: rename what is left, remove the folder.

    :returns: whether it was committed (and is now published and gone).
    :raises OSError: a step failed; the record stays, so a later call picks up from there.
    """
    try:
        with open(folder / COMMITTED, "rb", opener=private_file) as f:
            record = orjson.loads(f.read())
    except FileNotFoundError:
        return False
    finals = [(folder / source, folder.parent / final) for source, final in record["moves"]]
    for source, final in finals:
        if os.path.lexists(source):
            _chmod(source, public_mode(final))
            os.replace(source, final)
    for parent in dict.fromkeys(final.parent for _, final in finals):
        fsync_dir(parent)
    for path in folder.iterdir():
        if path.name != COMMITTED:
            _remove(path)
    (folder / COMMITTED).unlink()  # last: until here a crash leaves the steps to be completed
    shutil.rmtree(folder, ignore_errors=True)
    return True


def write_atomically(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``path`` whole or not at all (`AtomicFile`).

    :raises OSError: nothing was written; the temporary file is gone too.
    """
    target = AtomicFile(path, private=private)
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
    :raises OSError: the temporary file could not be created.
    """

    def __init__(self, path: Path, *, private: bool = False, text: bool = False) -> None:
        self.path = path if private else link_target(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self.tmp.unlink(missing_ok=True)
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE)
        try:
            os.fchmod(fd, PRIVATE if private else public_mode(self.path))
            self.file: IO[Any] = open(fd, "w", encoding="utf-8", newline="") if text else open(fd, "wb")  # noqa: SIM115
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        with contextlib.suppress(OSError):  # closing flushes what is being thrown away: a full disk
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def private_file(path: str, flags: int) -> int:
    """The opener (``open(path, mode, opener=private_file)``) of a file in a private directory: never
    through a symlink, and created 0600."""
    return os.open(path, flags | os.O_NOFOLLOW, PRIVATE)


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


def _chmod(path: Path, mode: int) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
