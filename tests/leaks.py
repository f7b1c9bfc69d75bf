"""Finding a key where it must not be: whole, cut to any run of `batchrun.scrub.RUN` of its
characters, JSON-escaped; in text, in every file under a folder, in the locals a traceback shows."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import batchrun
from batchrun.scrub import RUN

from .helpers import files_under

KEY = "sk-test-CANARY-5f1c2b9a8e7d4c3b2a1f0e9d"


def needles(key: str = KEY) -> list[bytes]:
    """The key; any run of 12 of its characters and its distinctive middle (a masked or cut copy
    is a leak too); the key as a JSON string can carry it undecoded (``\\/``, ``\\uXXXX``)."""
    runs = sorted({key[i : i + RUN] for i in range(len(key) - RUN + 1)})
    escaped = [key.replace("/", "\\/"), json_escaped(key)]
    return [form.encode() for form in (key, *runs, *escaped)] + [b"CANARY"]


def json_escaped(text: str) -> str:
    """``text`` as a JSON string's content with every character a ``\\uXXXX`` escape."""
    return "".join(f"\\u{ord(c):04X}" for c in text)


def leaks(text: str | bytes, key: str = KEY) -> list[bytes]:
    data = text.encode() if isinstance(text, str) else text
    return [needle for needle in needles(key) if needle in data]


def leaking_files(folder: Path, key: str = KEY) -> dict[str, list[bytes]]:
    return {str(path): found for path in files_under(folder) if (found := leaks(path.read_bytes(), key))}


def batchrun_frame_locals(exc: BaseException) -> list[str]:
    """``name=repr`` of every local in batchrun's own frames of ``exc``'s traceback (groups, causes
    and contexts included), as a traceback printer that shows locals renders them."""
    # The package's own folder, not any path with "batchrun" in it: the repository itself may be
    # cloned into a folder of that name, and then this file would match too.
    package = os.path.dirname(os.path.abspath(batchrun.__file__)) + os.sep
    found: list[str] = []
    pending = [traceback.TracebackException.from_exception(exc, capture_locals=True)]
    while pending:
        tb = pending.pop()
        for frame in tb.stack:
            if os.path.abspath(frame.filename).startswith(package) and frame.locals:
                found += [f"{frame.name}: {name}={value}" for name, value in frame.locals.items()]
        pending += [e for e in (tb.__cause__, tb.__context__) if e is not None]
        pending += getattr(tb, "exceptions", None) or []
    return found
