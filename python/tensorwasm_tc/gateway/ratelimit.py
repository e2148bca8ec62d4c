"""Per-token token buckets (``TENSOR_WASM_API_RATE_LIMIT_QPS`` / ``_BURST``).

A bucket holds up to ``burst`` tokens and refills at ``qps`` per second; a
request takes one. A refused request gets ``Retry-After = max(1, ceil((1 -
tokens) / qps))``. Every limited response carries ``RateLimit-Limit``
(burst), ``RateLimit-Remaining`` (whole tokens left) and ``RateLimit-Reset``
(seconds until the bucket is full again; on a 429, equal to Retry-After).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


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
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 100_000,
    ) -> None:
        if qps <= 0 or burst <= 0:
            raise ValueError("qps and burst must be positive")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()
        self._max = max_buckets

    def check(self, key: str) -> Decision:
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - at) * self.qps)
            if tokens >= 1.0:
                tokens -= 1.0
                allowed = True
            else:
                allowed = False
            if len(self._buckets) >= self._max and key not in self._buckets:
                self._evict_full(now)
            self._buckets[key] = (tokens, now)
        limit = _fmt(self.burst)
        if allowed:
            reset = math.ceil((self.burst - tokens) / self.qps)
            return Decision(
                True,
                {
                    "RateLimit-Limit": limit,
                    "RateLimit-Remaining": str(math.floor(tokens)),
                    "RateLimit-Reset": str(reset),
                },
            )
        retry = max(1, math.ceil((1.0 - tokens) / self.qps))
        return Decision(
            False,
            {
                "Retry-After": str(retry),
                "RateLimit-Limit": limit,
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(retry),
            },
            retry,
        )

    def _evict_full(self, now: float) -> None:
        """Drops buckets that have refilled (they equal a new one)."""
        full = [
            k
            for k, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.qps >= self.burst
        ]
        for k in full:
            del self._buckets[k]


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"
