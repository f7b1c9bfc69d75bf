"""A run's files as the filesystem has them, checked before anything is sent.

`RunConfig` is a value: it names the input and the files a run writes, and compares only
their names. What the names stand for on disk — a symlink at the output, a directory, two
names of one file — is looked at here, by whoever is about to open them: the CLI, and each
route (`engine.run_batch`, `batchapi.lifecycle.run_via_batch`) for callers of the library.
"""

from __future__ import annotations

from dataclasses import replace

from ..config import RunConfig
from ..errors import ConfigError
from .publish import link_target

# What may be a directory: the input is the reader's to refuse (with its own message), the
# checkpoint and the batches' folder are directories.
_DIRECTORIES = frozenset({"input file", "checkpoint", "batches"})


def checked(config: RunConfig) -> RunConfig:
    """``config`` with its output written through a symlink at its name (a shell redirection
    writes through one), once every file of the run is shown to be a file of its own: none is
    a directory (but the checkpoint and the batches' folder), and no two are one — by name,
    through symlinks, or as hard links.

    :raises ConfigError: the output is a link that is not followed (`publish.link_target`);
        naming the file that is a directory, or the two files that are one.
    """
    output = config.out
    try:
        target = link_target(output)
    except OSError as exc:
        raise ConfigError(f"the output {output}: {exc.strerror}; remove the link or choose another -o") from None
    if target != output:
        config = replace(config, output_path=target)
    seen: dict[object, str] = {}
    for what, path in config.files().items():
        if what not in _DIRECTORIES and path.is_dir():
            raise ConfigError(f"the {what} {path} is a directory; -o takes a file name")
        keys: list[object] = [path.resolve()]
        try:
            stat = path.stat()
            keys.append((stat.st_dev, stat.st_ino))
        except OSError:
            pass  # not there yet
        for key in keys:
            if key in seen:
                raise ConfigError(f"the {what} {path} is the {seen[key]}; choose another -o")
            seen[key] = f"{what} {path}"
    return config

