"""Connecting a run to the Ray cluster it uses (`connected`), its credentials reaching the workers.

- Which cluster: without an address (argument or ``RAY_ADDRESS``), a local cluster of the run's
  own, started for it and stopped after it; never one a ``ray start`` left running, which Ray
  would join by itself and whose workers have not the run's credentials. With an address, or a
  connection this process already made, an existing cluster.
- Credentials never travel as task arguments (Ray keeps those in its control store). The run's
  own cluster's processes inherit them from the driver's environment (`SECRETS_ENV`), put there
  before the cluster starts; on an existing cluster each worker reads the key from
  ``--api-key-env`` on its node, so ``--header`` and credentials in the URL are refused there.
- Ray's own log lines reach stderr only when batchrun's log shows debug lines (``-v``).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import orjson

from ..config import RunConfig
from ..errors import ConfigError
from .lean import without_idle_processes
from .phases import Phases

log = logging.getLogger("batchrun")

SECRETS_ENV = "BATCHRUN_RAY_CREDENTIALS"  # how the run's own cluster's workers get the driver's credentials
_INIT = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}


@contextlib.contextmanager
def connected(ray: Any, config: RunConfig, address: str | None, phases: Phases) -> Iterator[bool]:
    """Connected to the cluster the run uses (module docstring); inside, whether it is the run's
    own. Ray's logger is quiet meanwhile unless batchrun's shows debug lines. The start and the
    stop (or joining and leaving) are timed in ``phases``.

    :raises ConfigError: the credentials cannot reach an existing cluster's workers, or the
        cluster cannot be joined.
    """
    ray_log = logging.getLogger("ray")
    level = ray_log.level
    verbose = log.isEnabledFor(logging.DEBUG)
    if not verbose:
        ray_log.setLevel(logging.ERROR)
    try:
        if ray.is_initialized():  # the caller's own connection: not to be closed here
            check_existing(config)
            yield False
            return
        own = address is None and not os.environ.get("RAY_ADDRESS")
        if own:
            os.environ[SECRETS_ENV] = _secrets(config)  # the cluster started now inherits them
        else:
            check_existing(config)
        try:
            # "local": a new cluster even when one is running here (Ray would join that one).
            with contextlib.nullcontext() if verbose else _stderr_muted(), phases.timed("ray start"), \
                    without_idle_processes() if own else contextlib.nullcontext():
                ray.init(address="local" if own else address, **_INIT)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            joining = "start a local Ray cluster" if own else f"join the Ray cluster at {address or '$RAY_ADDRESS'}"
            raise ConfigError(f"--ray: cannot {joining}: {str(exc).splitlines()[0]}") from None
        finally:
            os.environ.pop(SECRETS_ENV, None)
        try:
            yield own
        finally:
            with phases.timed("ray stop"):
                ray.shutdown()  # the run's own cluster stops; from an existing one, the driver leaves
    finally:
        ray_log.setLevel(level)


@contextlib.contextmanager
def _stderr_muted() -> Iterator[None]:
    """File descriptor 2 on /dev/null: Ray's core writes its warnings there before its logging
    is set up (a line a second while a cluster refuses the connection), which no logger
    or environment variable silences; the processes it starts meanwhile keep their own logs."""
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def check_existing(config: RunConfig) -> None:
    """:raises ConfigError: credentials an existing cluster's workers cannot read on their node."""
    if config.headers or (config.api_key is not None and not os.environ.get(config.api_key_env)):
        raise ConfigError("on an existing Ray cluster each worker reads the key from "
                          f"${config.api_key_env} on its node, and nothing else: --header and a "
                          "user:password@ in --base-url can be used with --ray's own local cluster only")


def import_ray() -> Any:
    """Ray, typed loosely: its stubs are partial, and mypy runs without it too.

    :raises ConfigError: it is not installed.
    """
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'batchrun-llm[ray]' (in a checkout: pip install -e '.[ray]')") from None


def _secrets(config: RunConfig) -> str:
    """The credentials, for the environment the run's own cluster's processes inherit."""
    return orjson.dumps({"authorization": config.api_key.header() if config.api_key else None,
                         "headers": list(config.headers)}).decode()
