"""batchrun: run a JSONL file of LLM requests against an OpenAI-compatible endpoint
(docs/python-api.md).

>>> import batchrun
>>> config = batchrun.RunConfig.from_env("requests.jsonl")  # the key from OPENAI_API_KEY, as the CLI
>>> stats = batchrun.run_batch_sync(config)        # or: await batchrun.run_batch(config)
>>> stats.exit_code, stats.succeeded, stats.report.usage().total, stats.report.cost()
>>> batchrun.estimate("requests.jsonl").cost()     # before: what it would cost; nothing sent
>>> batchrun.label_file_sync("reviews.csv", "sentiment.txt", labels="positive,negative")
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import estimate, label_file, label_file_sync, report, run_batch, run_batch_sync
    from .batchapi.lifecycle import run_via_batch
    from .batchapi.options import BatchLimits, BatchOptions
    from .batchapi.pending import Pending
    from .config import ApiKey, RetryPolicy, RunConfig
    from .engine import Observer
    from .errors import (
        BatchrunError,
        ConfigError,
        FatalEndpointError,
        HTTPStatusError,
        InputFileError,
        MalformedResponse,
        RateLimited,
        RequestError,
        RetryableError,
        ServerError,
        TransportError,
    )
    from .records import Job, Result
    from .stats import RunStats
    from .usage import Usage

__all__ = [
    "ApiKey",
    "BatchLimits",
    "BatchOptions",
    "BatchrunError",
    "ConfigError",
    "FatalEndpointError",
    "HTTPStatusError",
    "InputFileError",
    "Job",
    "MalformedResponse",
    "Observer",
    "Pending",
    "RateLimited",
    "RequestError",
    "Result",
    "RetryPolicy",
    "RetryableError",
    "RunConfig",
    "RunStats",
    "ServerError",
    "TransportError",
    "Usage",
    "estimate",
    "label_file",
    "label_file_sync",
    "report",
    "run_batch",
    "run_batch_sync",
    "run_via_batch",
]

# Each name's module, imported when the name is first used (PEP 562): a process that needs a part
# of batchrun — a Ray shard's worker, the run's actor, the CLI — imports that part only.
_HOMES = {
    **dict.fromkeys(("estimate", "label_file", "label_file_sync", "report", "run_batch", "run_batch_sync"), ".api"),
    "Pending": ".batchapi.pending", "run_via_batch": ".batchapi.lifecycle",
    "BatchLimits": ".batchapi.options", "BatchOptions": ".batchapi.options",
    **dict.fromkeys(("ApiKey", "RetryPolicy", "RunConfig"), ".config"),
    "Observer": ".engine",
    **dict.fromkeys(("BatchrunError", "ConfigError", "FatalEndpointError", "HTTPStatusError", "InputFileError",
                     "MalformedResponse", "RateLimited", "RequestError", "RetryableError", "ServerError",
                     "TransportError"), ".errors"),
    "Job": ".records", "Result": ".records",
    "RunStats": ".stats",
    "Usage": ".usage",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'batchrun' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """What the package offers and its submodules, not the names this module itself uses."""
    return sorted({*__all__, *(name for name, value in globals().items()
                               if name.startswith("__") or isinstance(value, ModuleType))})
