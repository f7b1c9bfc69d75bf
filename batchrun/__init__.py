"""batchrun: run a JSONL file of LLM requests against an OpenAI-compatible endpoint.

>>> import batchrun
>>> config = batchrun.RunConfig("requests.jsonl", base_url="http://127.0.0.1:8000/v1")
>>> stats = batchrun.run_batch_sync(config)        # or: await batchrun.run_batch(config)
>>> stats.exit_code, stats.succeeded, stats.report.usage().total, stats.report.cost()
"""

from __future__ import annotations

from .batchapi.lifecycle import Pending, run_via_batch
from .batchapi.options import BatchLimits, BatchOptions
from .config import ApiKey, RetryPolicy, RunConfig
from .engine import Observer, run_batch
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
from .runner import run_batch_sync
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
    "run_batch",
    "run_batch_sync",
    "run_via_batch",
]
