"""Reconnect and retry delays: exponential backoff with full jitter.

Full jitter (a uniform draw between 0 and the exponential cap) spreads the
reconnects of many clients dropped together (a hub restart closes them all
with 1012 at once), so they do not come back in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Delay before reconnect attempt ``n`` (0-based) is uniform in
    ``[0, min(max_s, initial_s * multiplier**n)]``.

    ``reset_after_s``: a connection that stayed up this long resets the
    attempt count, so one drop after hours of service retries quickly, but
    a hub that accepts and immediately closes is not hammered.
    ``max_attempts``: consecutive failed attempts before giving up for good
    (``None``: never give up).
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0
    reset_after_s: float = 10.0
    max_attempts: int | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def cap(self, attempt: int) -> float:
        # min() before the power would overflow for large attempts.
        exp = min(attempt, 64)
        return min(self.max_s, self.initial_s * (self.multiplier**exp))

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0.0, self.cap(attempt))

    def exhausted(self, attempt: int) -> bool:
        return self.max_attempts is not None and attempt >= self.max_attempts
