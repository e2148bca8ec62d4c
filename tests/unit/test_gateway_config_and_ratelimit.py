"""The gateway's configuration (``TENSOR_WASM_API_*``, token entries) and its
per-token rate limiter, with a fake clock: no server, no sleeping."""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

import pytest
from tensorwasm_tc.gateway.config import (
    BARE_TOKEN_WARNING,
    ConfigError,
    GatewayConfig,
    parse_tokens,
)
from tensorwasm_tc.gateway.ratelimit import RateLimiter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --------------------------------------------------------------------------- tokens


def scopes(raw: str) -> dict[str, object]:
    return {e.secret: e.scope for e in parse_tokens(raw).entries}


def test_wildcard_and_single_tenant() -> None:
    parsed = parse_tokens("tokA:tenant=*,tokB:tenant=7")
    assert scopes("tokA:tenant=*,tokB:tenant=7") == {"tokA": "*", "tokB": [7]}
    assert parsed.malformed == () and parsed.bare_positions == ()
    a, b = parsed.entries
    assert a.allows(0) and a.allows(2**64 - 1)
    assert b.allows(7) and not b.allows(0) and not b.allows(8)
    assert [e.position for e in parsed.entries] == [1, 2]


def test_a_tenant_list_continues_over_digit_pieces() -> None:
    assert scopes("a:tenant=1,2,3,b:tenant=*") == {"a": [1, 2, 3], "b": "*"}
    assert scopes("a:tenant=3,1, 2 ,c:tenant=9,10") == {"a": [1, 2, 3], "c": [9, 10]}
    # Positions count entries, not pieces.
    parsed = parse_tokens("a:tenant=1,2,3,b:tenant=4")
    assert [e.position for e in parsed.entries] == [1, 2]


def test_digits_anywhere_else_are_malformed() -> None:
    # After a wildcard or a bare token there is no list to continue, and a
    # stray tenant id must never become a wildcard token.
    parsed = parse_tokens("a:tenant=*,5")
    assert scopes("a:tenant=*,5") == {"a": "*"}
    assert [p for p, _ in parsed.malformed] == [2] and parsed.bare_positions == ()
    parsed = parse_tokens("a:tenant=1,b,3")
    assert scopes("a:tenant=1,b,3") == {"a": [1], "b": "*"}
    assert parsed.bare_positions == (2,)
    assert [p for p, _ in parsed.malformed] == [3]
    assert parse_tokens("12345").entries == ()


def test_bare_token_is_a_deprecated_wildcard() -> None:
    parsed = parse_tokens("legacy,tokA:tenant=1")
    legacy = parsed.entries[0]
    assert legacy.bare and legacy.tenants is None and legacy.allows(123)
    assert parsed.bare_positions == (1,)
    assert not parsed.entries[1].bare


def test_empty_pieces_and_whitespace_are_ignored() -> None:
    parsed = parse_tokens(" , tokA:tenant=1 , ,, tokB : tenant = * ")
    assert scopes(" , tokA:tenant=1 , ,, tokB : tenant = * ") == {"tokA": [1]}
    # "tokB " (with a space) is not a valid token: reported, by position.
    assert [p for p, _ in parsed.malformed] == [2]
    assert parse_tokens("").entries == ()
    assert parse_tokens(" ,, ").entries == ()


@pytest.mark.parametrize(
    ("raw", "position"),
    [
        ("good:tenant=1,s3cr3t-bad:tenant=abc", 2),
        ("s3cr3t-bad:owner=1,good:tenant=1", 1),
        ("s3cr3t-bad:tenant,good:tenant=1", 1),
        ("good:tenant=1,s3cr3t bad!:tenant=1", 2),
        ("good:tenant=*,s3cr3t-bad:tenant=-1", 2),
        ("good:tenant=*,s3cr3t-bad:tenant=18446744073709551616", 2),
        ("s3cr3t-bad:tenant=1,18446744073709551616,good:tenant=2", 1),
        ("good:tenant=*,:tenant=1", 2),
    ],
)
def test_malformed_entries_are_dropped_and_reported_by_position(raw: str, position: int) -> None:
    parsed = parse_tokens(raw)
    assert [p for p, _ in parsed.malformed] == [position]
    assert "good" in {e.secret for e in parsed.entries}
    assert not any("s3cr3t" in e.secret for e in parsed.entries)
    for _, reason in parsed.malformed:
        assert "s3cr3t" not in reason and "good" not in reason


def test_u64_tenants_are_accepted() -> None:
    assert scopes("a:tenant=18446744073709551615") == {"a": [2**64 - 1]}


def test_duplicate_tokens_keep_the_first() -> None:
    parsed = parse_tokens("same:tenant=1,same:tenant=*")
    assert scopes("same:tenant=1,same:tenant=*") == {"same": [1]}
    assert [p for p, _ in parsed.malformed] == [2]
    assert all("same" not in reason for _, reason in parsed.malformed)


def test_startup_log_names_positions_never_secrets(caplog: pytest.LogCaptureFixture) -> None:
    env = {
        "TENSOR_WASM_API_TOKENS": "legacy-s3cr3t,other-s3cr3t,bad s3cr3t:tenant=1,"
        "ok-s3cr3t:tenant=1,2,nope-s3cr3t:tenant=x"
    }
    cfg = GatewayConfig.from_env(env, home=Path("/nonexistent"))
    with caplog.at_level(logging.INFO, logger="tensorwasm_tc.gateway"):
        cfg.log_startup()
    text = caplog.text
    assert "s3cr3t" not in text
    assert "entry #3 ignored" in text and "entry #5 ignored" in text
    # One deprecation warning for all bare tokens.
    assert text.count(BARE_TOKEN_WARNING) == 1
    assert "(entries #1, #2)" in text
    assert "auth: 3 bearer token(s) configured" in text
    assert not cfg.dev_mode


def test_empty_tokens_is_dev_mode_with_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    for raw in ("", "   "):
        cfg = GatewayConfig.from_env({"TENSOR_WASM_API_TOKENS": raw}, home=Path("/h"))
        assert cfg.dev_mode
        with caplog.at_level(logging.WARNING, logger="tensorwasm_tc.gateway"):
            cfg.log_startup()
        assert "DEV MODE" in caplog.text
        caplog.clear()


def test_only_malformed_tokens_is_not_dev_mode(caplog: pytest.LogCaptureFixture) -> None:
    cfg = GatewayConfig.from_env({"TENSOR_WASM_API_TOKENS": "x:tenant=?"}, home=Path("/h"))
    assert not cfg.dev_mode and cfg.tokens == ()
    with caplog.at_level(logging.WARNING, logger="tensorwasm_tc.gateway"):
        cfg.log_startup()
    assert "no usable entry" in caplog.text
    assert "x:tenant" not in caplog.text


# --------------------------------------------------------------------------- config


def test_defaults_without_any_setting(tmp_path: Path) -> None:
    cfg = GatewayConfig.from_env({"TENSOR_WASM_HOME": str(tmp_path)})
    assert cfg.home == tmp_path
    assert cfg.host == "127.0.0.1" and cfg.port == 8080
    assert cfg.dev_mode
    assert not cfg.rate_limited
    assert cfg.rate_limit_qps == 0 and cfg.rate_limit_burst == 0
    assert cfg.audit_log == "stdout"
    assert cfg.metrics_token is None
    assert cfg.max_body_bytes == 64 << 20
    assert cfg.require_tenant is False


def test_home_defaults_to_dot_tensor_wasm() -> None:
    assert GatewayConfig.from_env({}).home == Path.home() / ".tensor-wasm"


def test_flags_override_the_environment(tmp_path: Path) -> None:
    env = {"TENSOR_WASM_API_HOST": "0.0.0.0", "TENSOR_WASM_API_PORT": "9000"}
    cfg = GatewayConfig.from_env(env, host="127.0.0.2", port=9001, home=tmp_path)
    assert (cfg.host, cfg.port, cfg.home) == ("127.0.0.2", 9001, tmp_path)
    cfg = GatewayConfig.from_env(env, home=tmp_path)
    assert (cfg.host, cfg.port) == ("0.0.0.0", 9000)


@pytest.mark.parametrize(
    ("qps", "burst", "expected"),
    [
        ("5", None, (5.0, 200.0)),  # only QPS: burst defaults to 200
        (None, "7", (100.0, 7.0)),  # only BURST: qps defaults to 100
        ("5", "7", (5.0, 7.0)),
        ("0", None, (0.0, 0.0)),  # 0 = off
        (None, "0", (0.0, 0.0)),
        ("0", "0", (0.0, 0.0)),
        ("", "", (0.0, 0.0)),
        ("0.5", None, (0.5, 200.0)),
    ],
)
def test_rate_limit_defaulting(
    qps: str | None, burst: str | None, expected: tuple[float, float]
) -> None:
    env = {}
    if qps is not None:
        env["TENSOR_WASM_API_RATE_LIMIT_QPS"] = qps
    if burst is not None:
        env["TENSOR_WASM_API_RATE_LIMIT_BURST"] = burst
    cfg = GatewayConfig.from_env(env, home=Path("/h"))
    assert (cfg.rate_limit_qps, cfg.rate_limit_burst) == expected
    assert cfg.rate_limited == (expected[0] > 0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TENSOR_WASM_API_RATE_LIMIT_QPS", "fast"),
        ("TENSOR_WASM_API_RATE_LIMIT_QPS", "-1"),
        ("TENSOR_WASM_API_RATE_LIMIT_QPS", "nan"),
        ("TENSOR_WASM_API_RATE_LIMIT_BURST", "inf"),
        ("TENSOR_WASM_API_AUDIT_LOG", "file:"),
        ("TENSOR_WASM_API_AUDIT_LOG", "syslog"),
        ("TENSOR_WASM_API_REQUIRE_TENANT", "maybe"),
        ("TENSOR_WASM_API_MAX_BODY_BYTES", "100"),
        ("TENSOR_WASM_API_MAX_BODY_BYTES", "1MiB"),
        ("TENSOR_WASM_API_PORT", "http"),
    ],
)
def test_bad_settings_name_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        GatewayConfig.from_env({name: value}, home=Path("/h"))
    assert name in str(excinfo.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("yes", True), ("0", False), ("", False), ("false", False)],
)
def test_require_tenant_values(value: str, expected: bool) -> None:
    env = {"TENSOR_WASM_API_REQUIRE_TENANT": value}
    assert GatewayConfig.from_env(env, home=Path("/h")).require_tenant is expected


def test_other_settings_are_read(tmp_path: Path) -> None:
    env = {
        "TENSOR_WASM_API_AUDIT_LOG": f"file:{tmp_path}/audit.log",
        "TENSOR_WASM_API_METRICS_TOKEN": " m-token ",
        "TENSOR_WASM_API_MAX_BODY_BYTES": "4096",
        "TENSOR_WASM_API_SHUTDOWN_GRACE_S": "2.5",
        "TENSOR_WASM_API_TOKENS": "a:tenant=1",
    }
    cfg = GatewayConfig.from_env(env, home=tmp_path)
    assert cfg.audit_log == f"file:{tmp_path}/audit.log"
    assert cfg.metrics_token == "m-token"
    assert cfg.max_body_bytes == 4096
    assert cfg.shutdown_grace_s == 2.5
    assert [e.secret for e in cfg.tokens] == ["a"]
    assert GatewayConfig.from_env({"TENSOR_WASM_API_AUDIT_LOG": "none"}).audit_log == "none"


# --------------------------------------------------------------------------- rate limiter


def test_burst_then_refusal_headers() -> None:
    clock = FakeClock()
    rl = RateLimiter(qps=2, burst=3, clock=clock)
    decisions = [rl.check("k") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, True]
    assert [d.headers["RateLimit-Limit"] for d in decisions] == ["3", "3", "3"]
    assert [d.headers["RateLimit-Remaining"] for d in decisions] == ["2", "1", "0"]
    # Reset: seconds until the bucket is full again = ceil((burst - tokens) / qps).
    assert [d.headers["RateLimit-Reset"] for d in decisions] == ["1", "1", "2"]
    assert all("Retry-After" not in d.headers for d in decisions)

    refused = rl.check("k")
    assert not refused.allowed
    # tokens = 0: Retry-After = max(1, ceil((1 - 0) / 2)) = 1
    assert refused.retry_after == 1
    assert refused.headers == {
        "Retry-After": "1",
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "1",
    }


@pytest.mark.parametrize(
    ("elapsed", "retry"),
    [
        (0.0, 4),  # tokens 0:    ceil(1 / 0.25) = 4
        (1.0, 3),  # tokens 0.25: ceil(0.75 / 0.25) = 3
        (2.0, 2),  # tokens 0.5:  ceil(0.5 / 0.25) = 2
        (2.5, 2),  # tokens .625: ceil(1.5) = 2
        (3.0, 1),  # tokens 0.75: ceil(1) = 1
        (3.9, 1),  # tokens .975: ceil(0.1) = 1
    ],
)
def test_retry_after_arithmetic(elapsed: float, retry: int) -> None:
    clock = FakeClock()
    rl = RateLimiter(qps=0.25, burst=1, clock=clock)
    assert rl.check("k").allowed
    clock.advance(elapsed)
    d = rl.check("k")
    assert not d.allowed
    assert d.retry_after == retry
    assert d.headers["Retry-After"] == str(retry)
    assert d.headers["RateLimit-Reset"] == str(retry)
    # Matches the spec's formula exactly.
    tokens = min(1.0, elapsed * 0.25)
    assert retry == max(1, math.ceil((1 - tokens) / 0.25))


def test_retry_after_is_at_least_one_second() -> None:
    clock = FakeClock()
    rl = RateLimiter(qps=1000, burst=1, clock=clock)
    assert rl.check("k").allowed
    d = rl.check("k")
    assert not d.allowed
    assert d.headers["Retry-After"] == "1"  # ceil(1/1000) = 1, and never 0


def test_refused_requests_take_no_token_and_the_bucket_refills() -> None:
    clock = FakeClock()
    rl = RateLimiter(qps=1, burst=2, clock=clock)
    assert rl.check("k").allowed and rl.check("k").allowed
    for _ in range(5):
        assert not rl.check("k").allowed
    clock.advance(1.0)
    d = rl.check("k")
    assert d.allowed and d.headers["RateLimit-Remaining"] == "0"
    assert not rl.check("k").allowed
    # A long idle period refills to the burst, never beyond.
    clock.advance(3600)
    results = [rl.check("k").allowed for _ in range(3)]
    assert results == [True, True, False]


def test_buckets_are_per_key() -> None:
    clock = FakeClock()
    rl = RateLimiter(qps=1, burst=1, clock=clock)
    assert rl.check("a").allowed
    assert not rl.check("a").allowed
    assert rl.check("b").allowed


def test_a_clock_going_backwards_adds_no_tokens() -> None:
    clock = FakeClock()
    rl = RateLimiter(qps=1, burst=1, clock=clock)
    assert rl.check("k").allowed
    clock.advance(-10)
    assert not rl.check("k").allowed


def test_fractional_burst_is_formatted_as_given() -> None:
    rl = RateLimiter(qps=1, burst=2.5, clock=FakeClock())
    d = rl.check("k")
    assert d.headers["RateLimit-Limit"] == "2.5"
    assert d.headers["RateLimit-Remaining"] == "1"


@pytest.mark.parametrize(("qps", "burst"), [(0, 1), (1, 0), (-1, 5)])
def test_limiter_needs_positive_settings(qps: float, burst: float) -> None:
    with pytest.raises(ValueError):
        RateLimiter(qps=qps, burst=burst)


def test_bucket_table_stays_bounded() -> None:
    clock = FakeClock()
    rl = RateLimiter(qps=1, burst=1, clock=clock, max_buckets=4)
    for i in range(4):
        rl.check(f"k{i}")
    clock.advance(10)  # every bucket is full again: equal to a new one
    for i in range(4, 8):
        assert rl.check(f"k{i}").allowed
    assert len(rl) <= 5


def test_concurrent_checks_never_hand_out_more_than_the_burst() -> None:
    rl = RateLimiter(qps=1, burst=50, clock=FakeClock())
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            ok = rl.check("shared").allowed
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 200
    assert sum(allowed) == 50
