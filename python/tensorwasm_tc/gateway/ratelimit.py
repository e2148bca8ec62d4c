"""Per-token token buckets (``TENSOR_WASM_API_RATE_LIMIT_QPS`` / ``_BURST``).

A bucket holds up to ``burst`` tokens and refills at ``qps`` per second; a
request takes one. A refused request gets ``Retry-After = max(1, ceil((1 -
tokens) / qps))``. Every limited response carries ``RateLimit-Limit``
(burst), ``RateLimit-Remaining`` (whole tokens left) and ``RateLimit-Reset``
(seconds until the bucket is full again; on a 429, equal to Retry-After).

The buckets live in the core (``_core.RateLimiter``): the native front of
``tensor-wasm serve`` checks the same buckets as this app, so a token has
one budget whichever side answers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tensorwasm_tc import _core


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    headers: dict[str, str]
    retry_after: int = 0


class RateLimiter:
    def __init__(
        self,
        qps: float,
        burst: float,
        clock: Callable[[], float] | None = None,
        max_buckets: int = 100_000,
    ) -> None:
        if qps <= 0 or burst <= 0:
            raise ValueError("qps and burst must be positive")
        self.qps = qps
        self.burst = burst
        # None: the core reads the monotonic clock (time.monotonic's) itself.
        self._clock = clock
        self.core = _core.RateLimiter(float(qps), float(burst), _fmt(burst), max_buckets)

    def check(self, key: str) -> Decision:
        now = None if self._clock is None else self._clock()
        allowed, retry_after, headers = self.core.check(key, now)
        return Decision(allowed, dict(headers), retry_after)

    def __len__(self) -> int:
        """Buckets held now."""
        return len(self.core)


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"
