"""`call_with_retry` retries only transient errors, within the attempt count
and the deadline budget, with growing jittered backoff (fake clock/sleep)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from prometheus_client import REGISTRY
from tensorwasm_tc.tensorcast.errors import RETRYABLE_CODES, ArtifactError
from tensorwasm_tc.tensorcast.options import DEFAULT_RETRY, RetryPolicy, StoreOptions
from tensorwasm_tc.tensorcast.retry import backoff_seconds, call_with_retry


class FakeTime:
    """A clock that only moves when slept on (or when an attempt spends time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(
    errors: list[ArtifactError], t: FakeTime, spend: float = 0.0
) -> tuple[Callable[[float], str], list[float]]:
    """An attempt that raises ``errors`` in turn, then returns "ok"; records
    the remaining-deadline argument of every call."""
    seen: list[float] = []

    def attempt(remaining: float) -> str:
        seen.append(remaining)
        t.now += spend
        if len(seen) <= len(errors):
            raise errors[len(seen) - 1]
        return "ok"

    return attempt, seen


def retries(verb: str) -> float:
    return REGISTRY.get_sample_value("tc_store_operation_retries_total", {"verb": verb}) or 0.0


NO_JITTER = RetryPolicy(40.0, 5, base_backoff_seconds=0.1, backoff_multiplier=2.0, jitter=0.0)


def test_success_on_first_attempt_passes_the_whole_deadline() -> None:
    t = FakeTime()
    attempt, seen = failing([], t)
    assert call_with_retry("get", DEFAULT_RETRY["get"], attempt, sleep=t.sleep, clock=t.clock)
    assert seen == [40.0]
    assert t.sleeps == []


@pytest.mark.parametrize("code", sorted(RETRYABLE_CODES))
def test_each_transient_code_is_retried_until_success(code: str) -> None:
    t = FakeTime()
    before = retries("t_transient")
    attempt, seen = failing([ArtifactError("x", code), ArtifactError("x", code)], t)
    out = call_with_retry("t_transient", NO_JITTER, attempt, sleep=t.sleep, clock=t.clock)
    assert out == "ok"
    assert len(seen) == 3
    assert retries("t_transient") == before + 2


@pytest.mark.parametrize(
    "code",
    [
        "INVALID_ARGUMENT",
        "FAILED_PRECONDITION",
        "NOT_FOUND",
        "RESOURCE_EXHAUSTED",
        "DATA_LOSS",
        "INTERNAL",
        "PERMISSION_DENIED",
    ],
)
def test_non_retryable_codes_are_raised_at_once(code: str) -> None:
    t = FakeTime()
    err = ArtifactError("nope", code)
    attempt, seen = failing([err], t)
    with pytest.raises(ArtifactError) as info:
        call_with_retry("get", NO_JITTER, attempt, sleep=t.sleep, clock=t.clock)
    assert info.value is err
    assert len(seen) == 1
    assert t.sleeps == []


def test_retryable_flag_false_is_not_retried_even_for_a_transient_code() -> None:
    t = FakeTime()
    attempt, seen = failing([ArtifactError("x", "UNAVAILABLE", retryable=False)], t)
    with pytest.raises(ArtifactError):
        call_with_retry("get", NO_JITTER, attempt, sleep=t.sleep, clock=t.clock)
    assert len(seen) == 1


def test_retryable_flag_on_a_non_transient_code_is_not_retried() -> None:
    t = FakeTime()
    attempt, seen = failing([ArtifactError("x", "RESOURCE_EXHAUSTED", retryable=True)], t)
    with pytest.raises(ArtifactError):
        call_with_retry("get", NO_JITTER, attempt, sleep=t.sleep, clock=t.clock)
    assert len(seen) == 1


def test_other_exceptions_propagate_unretried() -> None:
    t = FakeTime()
    calls = []

    def attempt(remaining: float) -> None:
        calls.append(remaining)
        raise ValueError("bug")

    with pytest.raises(ValueError):
        call_with_retry("get", NO_JITTER, attempt, sleep=t.sleep, clock=t.clock)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("verb", "attempts"), [("register", 2), ("put", 2), ("get", 3), ("get_into", 3)]
)
def test_max_attempts_of_the_default_policies(verb: str, attempts: int) -> None:
    t = FakeTime()
    errs = [ArtifactError(f"down {i}", "UNAVAILABLE") for i in range(10)]
    attempt, seen = failing(errs, t)
    with pytest.raises(ArtifactError) as info:
        call_with_retry(verb, StoreOptions().retry_for(verb), attempt, sleep=t.sleep, clock=t.clock)
    assert len(seen) == attempts
    assert info.value is errs[attempts - 1]  # the last error, not the first
    assert len(t.sleeps) == attempts - 1


def test_retry_overrides_replace_the_default_policy() -> None:
    opts = StoreOptions(retry_overrides={"get": RetryPolicy(20.0, 2, 0.1, 2.0, 0.5)})
    assert opts.retry_for("get") == RetryPolicy(20.0, 2, 0.1, 2.0, 0.5)
    assert opts.retry_for("put") == DEFAULT_RETRY["put"]


def test_backoff_grows_exponentially_without_jitter() -> None:
    t = FakeTime()
    attempt, _ = failing([ArtifactError("x", "ABORTED")] * 4, t)
    call_with_retry("get", NO_JITTER, attempt, sleep=t.sleep, clock=t.clock)
    assert t.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8])


def test_jitter_stays_within_its_bounds() -> None:
    policy = RetryPolicy(40.0, 3, base_backoff_seconds=1.0, backoff_multiplier=3.0, jitter=0.5)
    for attempt in (1, 2, 3):
        nominal = 3.0 ** (attempt - 1)
        low = backoff_seconds(policy, attempt, uniform=lambda a, b: a)
        high = backoff_seconds(policy, attempt, uniform=lambda a, b: b)
        assert low == pytest.approx(nominal * 0.5)
        assert high == pytest.approx(nominal * 1.5)
        for _ in range(200):
            assert nominal * 0.5 <= backoff_seconds(policy, attempt) <= nominal * 1.5


def test_jitter_is_clamped_so_backoff_is_never_negative() -> None:
    policy = RetryPolicy(40.0, 3, base_backoff_seconds=1.0, jitter=3.0)
    assert backoff_seconds(policy, 1, uniform=lambda a, b: a) == 0.0
    assert backoff_seconds(policy, 1, uniform=lambda a, b: b) == pytest.approx(2.0)


def test_jitter_factor_is_drawn_per_retry() -> None:
    t = FakeTime()
    draws = iter([0.5, 1.5])
    attempt, _ = failing([ArtifactError("x", "UNAVAILABLE")] * 2, t)
    call_with_retry(
        "get",
        RetryPolicy(40.0, 3, 1.0, 2.0, 0.5),
        attempt,
        sleep=t.sleep,
        clock=t.clock,
        uniform=lambda a, b: next(draws),
    )
    assert t.sleeps == pytest.approx([0.5, 3.0])


def test_deadline_budget_stops_retries_before_max_attempts() -> None:
    # Each attempt takes 4 s of a 10 s budget: after two attempts (8 s plus a
    # 1 s pause) a third would start past the deadline once its pause is added.
    t = FakeTime()
    policy = RetryPolicy(10.0, 10, base_backoff_seconds=1.0, backoff_multiplier=1.0, jitter=0.0)
    attempt, seen = failing([ArtifactError("x", "UNAVAILABLE")] * 10, t, spend=4.0)
    with pytest.raises(ArtifactError):
        call_with_retry("get", policy, attempt, sleep=t.sleep, clock=t.clock)
    assert len(seen) == 2
    assert seen == pytest.approx([10.0, 5.0])  # remaining budget passed to each attempt


def test_a_backoff_longer_than_the_budget_is_not_slept() -> None:
    t = FakeTime()
    policy = RetryPolicy(1.0, 5, base_backoff_seconds=5.0, jitter=0.0)
    attempt, seen = failing([ArtifactError("x", "DEADLINE_EXCEEDED")], t)
    with pytest.raises(ArtifactError):
        call_with_retry("get", policy, attempt, sleep=t.sleep, clock=t.clock)
    assert len(seen) == 1
    assert t.sleeps == []


def test_retry_counter_counts_retries_not_attempts() -> None:
    t = FakeTime()
    before_ok, before_fail = retries("t_count_ok"), retries("t_count_fail")
    attempt, _ = failing([ArtifactError("x", "UNAVAILABLE")], t)
    call_with_retry("t_count_ok", NO_JITTER, attempt, sleep=t.sleep, clock=t.clock)
    attempt, _ = failing([ArtifactError("x", "NOT_FOUND")], t)
    with pytest.raises(ArtifactError):
        call_with_retry("t_count_fail", NO_JITTER, attempt, sleep=t.sleep, clock=t.clock)
    assert retries("t_count_ok") == before_ok + 1
    assert retries("t_count_fail") == before_fail


class _FakeRpcError(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "from the wire"

    def initial_metadata(self) -> None: ...
    def trailing_metadata(self) -> None: ...
    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None: ...
    def cancel(self) -> None: ...
    def add_callback(self, callback: object) -> None: ...


def test_a_raw_grpc_error_is_mapped_and_retried_like_an_artifact_error() -> None:
    t = FakeTime()
    n = []

    def attempt(remaining: float) -> str:
        n.append(1)
        if len(n) == 1:
            raise _FakeRpcError(grpc.StatusCode.UNAVAILABLE)
        if len(n) == 2:
            raise _FakeRpcError(grpc.StatusCode.NOT_FOUND)
        return "ok"

    with pytest.raises(ArtifactError) as info:
        call_with_retry("get", NO_JITTER, attempt, sleep=t.sleep, clock=t.clock)
    assert info.value.status_code == "NOT_FOUND"
    assert info.value.retryable is False
    assert len(n) == 2
