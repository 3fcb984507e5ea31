"""The one backoff every reconnect and retry in the project uses.

Random first delay, geometric growth, a cap, and full jitter on every step, as in
``websockets.asyncio.client.backoff``. It never gives up: callers decide when
to stop (usually never, for the collector).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Parameters of the backoff: delays in seconds."""

    initial: float = 0.5
    factor: float = 1.8
    cap: float = 60.0
    jitter: float = 0.5  # each delay is drawn from [d * (1 - jitter), d]

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.cap <= 0 or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid backoff policy {self!r}")


def backoff(policy: BackoffPolicy = BackoffPolicy(), rng: random.Random | None = None
            ) -> Iterator[float]:
    """Yield delays forever: the first in ``[0, initial]``, then growing by ``factor`` up to ``cap``.

    Every delay after the first is jittered down by up to ``jitter`` of its value,
    so many clients that lost the same server do not come back in lockstep.
    """
    draw = (rng or random.Random()).random
    yield draw() * policy.initial
    delay = policy.initial
    while True:
        yield delay * (1 - policy.jitter * draw())
        delay = min(delay * policy.factor, policy.cap)
