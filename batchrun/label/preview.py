"""``batchrun label --dry-run``: every row rendered and priced, nothing written or sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .job import LabelJob
from .render import CHAT_URL, Renderer, Request

if TYPE_CHECKING:
    from ..accounting.estimate import Estimate
    from ..accounting.pricing import PriceTable


@dataclass
class Preview:
    """What a run would send: the first requests, and the estimate of all of them."""

    requests: list[Request]
    estimate: Estimate


def preview(job: LabelJob, count: int = 3, prices: PriceTable | None = None) -> Preview:
    """Render every row without writing or sending anything (``--dry-run``).

    :raises InputFileError: rows that could not be sent, as a run would find them.
    """
    # Imported here: every run imports this package, only a dry run needs prices and token counts.
    from ..accounting.estimate import Estimate
    from ..accounting.pricing import load_prices

    shown: list[Request] = []
    estimate = Estimate(prices or load_prices(), source=str(job.data_path))
    for request in Renderer(job.data_path, job.spec, job.id_field, job.delimiter):
        if len(shown) < count:
            shown.append(request)
        estimate.add_request(job.spec.model, CHAT_URL, request.body)
    return Preview(shown, estimate)
