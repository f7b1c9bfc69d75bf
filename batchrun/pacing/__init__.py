"""When the next request may go: the endpoint's health, its quotas, and its pushback.

`Pacer` composes the policies, each in its own module and testable alone on a fake clock
(`clock.Clock`): `breaker` (is the endpoint up), `quota` with `bucket` and `headers` (requests and
tokens per minute, given or announced), `acceptance` (shedding or a quota, when nothing says).
"""

from .breaker import CircuitBreaker
from .clock import SYSTEM_CLOCK, Clock, SystemClock
from .pacer import Pacer, Permit, estimate_cost

__all__ = ["SYSTEM_CLOCK", "CircuitBreaker", "Clock", "Pacer", "Permit", "SystemClock", "estimate_cost"]
