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
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import orjson

COMMITTED = "committed"


def commit(folder: Path, moves: Sequence[tuple[Path, Path]]) -> None:
    """Record that ``folder`` is committed, then publish it (`complete`).

    :param moves: ``(file in folder, final path beside folder)``, in the order to rename them.
    :raises OSError: a step failed; what is done stays done, and `complete` does the rest.
    """
    record = {"moves": [[source.name, final.name] for source, final in moves]}
    write_atomically(folder / COMMITTED, orjson.dumps(record))
    fsync_dir(folder)  # the record must be on disk before the first rename can be
    complete(folder)


def complete(folder: Path) -> bool:
    """Finish publishing ``folder`` if it is committed: rename what is left, remove the folder.

    :returns: whether it was committed (and is now published and gone).
    :raises OSError: a step failed; the record stays, so a later call picks up from there.
    """
    try:
        record = orjson.loads((folder / COMMITTED).read_bytes())
    except FileNotFoundError:
        return False
    for source, final in record["moves"]:
        if (folder / source).exists():
            os.replace(folder / source, folder.parent / final)
    fsync_dir(folder.parent)
    for path in folder.iterdir():
        if path.name != COMMITTED:
            _remove(path)
    (folder / COMMITTED).unlink()  # last: until here a crash leaves the steps to be completed
    shutil.rmtree(folder, ignore_errors=True)
    return True


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temporary file, fsynced, renamed over it).

    :raises OSError: nothing was written; the temporary file is gone too.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    """Make the renames and removals in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
