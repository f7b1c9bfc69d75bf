"""The directory a run keeps beside its output (the engine's checkpoint, a label run's work
folder): created before anything is sent, or refused with a message instead of a traceback."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError


def make_run_dir(path: Path, out: Path) -> bool:
    """Create ``path``, the run's directory beside its output ``out``.

    :returns: whether it was created (``False``: it was there already).
    :raises ConfigError: the output's directory does not exist, or ``path`` cannot be created
        in it (no permission, a read-only filesystem, a file where a directory should be).
    """
    try:
        path.mkdir()
    except FileExistsError:
        return False
    except FileNotFoundError:
        raise ConfigError(f"{out.parent}: output directory does not exist") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create: {exc.strerror}") from None
    return True
