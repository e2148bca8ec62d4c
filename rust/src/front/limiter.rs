//! Per-token token buckets (`TENSOR_WASM_API_RATE_LIMIT_QPS` / `_BURST`).
//!
//! One limiter serves the native front and the Python app alike, so a
//! token's budget is one budget whichever of them answers. A bucket holds
//! up to `burst` tokens and refills at `qps` per second; a request takes
//! one. A refused request gets `Retry-After = max(1, ceil((1 - tokens) /
//! qps))`. Every limited response carries `RateLimit-Limit` (burst),
//! `RateLimit-Remaining` (whole tokens left) and `RateLimit-Reset` (seconds
//! until the bucket is full again; on a 429, equal to Retry-After).

use std::collections::HashMap;

use parking_lot::Mutex;

/// The answer for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Seconds a refused caller should wait (0 when allowed).
    pub retry_after: u64,
    /// Response headers, in the order they are sent.
    pub headers: Vec<(&'static str, String)>,
}

pub struct RateLimiter {
    qps: f64,
    burst: f64,
    /// `burst` as the `RateLimit-Limit` header spells it.
    limit_text: String,
    max_buckets: usize,
    /// key -> (tokens, at)
    buckets: Mutex<HashMap<String, (f64, f64)>>,
}

/// Seconds on the monotonic clock (the clock Python's `time.monotonic` reads).
pub fn monotonic_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

impl RateLimiter {
    /// `None` unless `qps` and `burst` are both positive and finite.
    pub fn new(qps: f64, burst: f64, limit_text: String, max_buckets: usize) -> Option<Self> {
        if !(qps > 0.0 && burst > 0.0 && qps.is_finite() && burst.is_finite()) {
            return None;
        }
        Some(RateLimiter {
            qps,
            burst,
            limit_text,
            max_buckets: max_buckets.max(1),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one token from `key`'s bucket at time `now` (seconds) if it has one.
    pub fn check(&self, key: &str, now: f64) -> Decision {
        let (allowed, tokens) = {
            let mut buckets = self.buckets.lock();
            let (tokens, at) = buckets.get(key).copied().unwrap_or((self.burst, now));
            let mut tokens = self.burst.min(tokens + (now - at).max(0.0) * self.qps);
            let allowed = tokens >= 1.0;
            if allowed {
                tokens -= 1.0;
            }
            if buckets.len() >= self.max_buckets && !buckets.contains_key(key) {
                self.evict_full(&mut buckets, now);
            }
            buckets.insert(key.to_owned(), (tokens, now));
            (allowed, tokens)
        };
        let limit = self.limit_text.clone();
        if allowed {
            let reset = ((self.burst - tokens) / self.qps).ceil();
            return Decision {
                allowed: true,
                retry_after: 0,
                headers: vec![
                    ("RateLimit-Limit", limit),
                    ("RateLimit-Remaining", format!("{}", tokens.floor() as i64)),
                    ("RateLimit-Reset", format!("{}", reset as i64)),
                ],
            };
        }
        let retry = ((1.0 - tokens) / self.qps).ceil().max(1.0) as u64;
        Decision {
            allowed: false,
            retry_after: retry,
            headers: vec![
                ("Retry-After", retry.to_string()),
                ("RateLimit-Limit", limit),
                ("RateLimit-Remaining", "0".to_owned()),
                ("RateLimit-Reset", retry.to_string()),
            ],
        }
    }

    /// Drops buckets that have refilled (they equal a new one).
    fn evict_full(&self, buckets: &mut HashMap<String, (f64, f64)>, now: f64) {
        buckets.retain(|_, (tokens, at)| *tokens + (now - *at) * self.qps < self.burst);
    }

    pub fn buckets(&self) -> usize {
        self.buckets.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(qps: f64, burst: f64) -> RateLimiter {
        RateLimiter::new(qps, burst, format!("{burst}"), 100).unwrap()
    }

    #[test]
    fn burst_then_refusal_with_retry_after() {
        let rl = limiter(2.0, 3.0);
        for left in ["2", "1", "0"] {
            let d = rl.check("k", 10.0);
            assert!(d.allowed);
            assert_eq!(d.headers[1], ("RateLimit-Remaining", left.to_owned()));
        }
        let d = rl.check("k", 10.0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 1);
        assert_eq!(d.headers[0], ("Retry-After", "1".to_owned()));
        // Half a second refills one token at 2 qps.
        assert!(rl.check("k", 10.5).allowed);
    }

    #[test]
    fn slow_refill_rounds_retry_after_up() {
        let rl = limiter(0.25, 1.0);
        assert!(rl.check("k", 0.0).allowed);
        let d = rl.check("k", 1.0);
        assert!(!d.allowed);
        // 0.25 tokens after 1 s: 0.75 missing at 0.25/s = 3 s.
        assert_eq!(d.retry_after, 3);
    }

    #[test]
    fn full_buckets_are_evicted_at_capacity() {
        let rl = RateLimiter::new(1.0, 1.0, "1".into(), 2).unwrap();
        rl.check("a", 0.0);
        rl.check("b", 0.0);
        rl.check("c", 5.0);
        assert_eq!(rl.buckets(), 1);
    }

    #[test]
    fn non_positive_settings_are_refused() {
        assert!(RateLimiter::new(0.0, 1.0, "1".into(), 1).is_none());
        assert!(RateLimiter::new(1.0, f64::NAN, "1".into(), 1).is_none());
    }
}
