"""Bounded retries of one Store verb.

`call_with_retry` owns the SDK's retry rule and nothing else: it never maps
errors (that is `errors.from_rpc_error`) and never decides a verb's policy
(that is `options.StoreOptions.retry_for`). It retries a failed attempt only
when all of these hold:

* the failure is an `ArtifactError` with ``retryable=True``;
* its ``status_code`` is one of `RETRYABLE_CODES` (UNAVAILABLE,
  DEADLINE_EXCEEDED, ABORTED);
* fewer than ``policy.max_attempts`` attempts were made;
* the backoff before the next attempt ends before the verb's deadline
  (``policy.deadline_seconds`` after the first attempt started).

Anything else is raised at once, unchanged. Bounded retries keep outages
visible and jittered backoff keeps many workers from retrying in lockstep.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import grpc

from tensorwasm_tc.tensorcast import _metrics
from tensorwasm_tc.tensorcast.errors import RETRYABLE_CODES, ArtifactError, from_rpc_error
from tensorwasm_tc.tensorcast.options import RetryPolicy

__all__ = ["RETRYABLE_CODES", "backoff_seconds", "call_with_retry", "should_retry"]

T = TypeVar("T")

log = logging.getLogger(__name__)


def should_retry(err: ArtifactError) -> bool:
    """Whether the error class allows another attempt (budget aside)."""
    return bool(err.retryable) and err.status_code in RETRYABLE_CODES


def backoff_seconds(
    policy: RetryPolicy,
    attempt: int,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """The pause after failed attempt number ``attempt`` (1-based):
    ``base * multiplier ** (attempt - 1)`` times a factor drawn from
    ``[1 - jitter, 1 + jitter]`` (jitter clamped to ``[0, 1]``)."""
    base = max(0.0, policy.base_backoff_seconds) * max(0.0, policy.backoff_multiplier) ** (
        attempt - 1
    )
    jitter = min(1.0, max(0.0, policy.jitter))
    factor = uniform(1.0 - jitter, 1.0 + jitter) if jitter > 0 else 1.0
    return max(0.0, base * factor)


def call_with_retry(
    verb: str,
    policy: RetryPolicy,
    attempt: Callable[[float], T],
    *,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    uniform: Callable[[float, float], float] = random.uniform,
) -> T:
    """Calls ``attempt(remaining_deadline_seconds)`` until it returns, retrying
    transient failures within ``policy``; returns its result or raises the last
    error. A raw `grpc.RpcError` escaping ``attempt`` is mapped to an
    `ArtifactError` first, so callers always see the SDK's one error class.
    Each retry increments ``tc_store_operation_retries_total{verb}``."""
    max_attempts = max(1, int(policy.max_attempts))
    deadline = clock() + max(0.0, policy.deadline_seconds)
    number = 0
    while True:
        number += 1
        remaining = max(0.0, deadline - clock())
        try:
            return attempt(remaining)
        except grpc.RpcError as rpc_err:
            err = from_rpc_error(rpc_err, verb)
            delay = _retry_delay(verb, policy, err, number, max_attempts, deadline, clock, uniform)
            if delay is None:
                raise err from rpc_err
        except ArtifactError as err:
            delay = _retry_delay(verb, policy, err, number, max_attempts, deadline, clock, uniform)
            if delay is None:
                raise
        _metrics.record_retry(verb)
        sleep(delay)


def _retry_delay(
    verb: str,
    policy: RetryPolicy,
    err: ArtifactError,
    number: int,
    max_attempts: int,
    deadline: float,
    clock: Callable[[], float],
    uniform: Callable[[float, float], float],
) -> float | None:
    """The pause before the next attempt, or None when there is none."""
    if not should_retry(err):
        return None
    if number >= max_attempts:
        log.debug(
            "%s: giving up after %d attempts: %s",
            verb,
            number,
            err.status_code,
            extra={"tc.store.verb": verb},
        )
        return None
    delay = backoff_seconds(policy, number, uniform)
    if clock() + delay >= deadline:
        log.debug(
            "%s: no deadline budget left for another attempt: %s",
            verb,
            err.status_code,
            extra={"tc.store.verb": verb},
        )
        return None
    log.info(
        "%s failed with %s (attempt %d of %d); retrying in %.3fs",
        verb,
        err.status_code,
        number,
        max_attempts,
        delay,
        extra={"tc.store.verb": verb},
    )
    return delay
