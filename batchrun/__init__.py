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

from .api import estimate, label_file, label_file_sync, report, run_batch, run_batch_sync
from .batchapi.lifecycle import Pending, run_via_batch
from .batchapi.options import BatchLimits, BatchOptions
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
