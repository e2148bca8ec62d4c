//! HTTP counters shared by the native front and the Python app: requests by
//! method, route template and status, a duration histogram and in-flight
//! gauges by method and route, instance spawns, rate-limit refusals, and
//! the concurrency slots of each route class. `/metrics` reads them once
//! (`HttpStats::snapshot`), whichever side served the requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Upper bounds (seconds) of the duration histogram's buckets.
pub const BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Clone, Default)]
pub struct RouteStats {
    pub in_flight: i64,
    /// (status, count), in first-seen order.
    pub statuses: Vec<(u16, u64)>,
    /// Per-bucket (not cumulative) counts; the last slot is +Inf.
    pub buckets: [u64; BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

#[derive(Default)]
pub struct HttpStats {
    routes: Mutex<HashMap<(String, String), RouteStats>>,
    spawns: AtomicU64,
    rate_limited: AtomicU64,
    /// Requests the native front answered itself / handed to the app.
    front_served: AtomicU64,
    front_forwarded: AtomicU64,
}

impl HttpStats {
    fn with_route<R>(&self, method: &str, route: &str, f: impl FnOnce(&mut RouteStats) -> R) -> R {
        let mut routes = self.routes.lock();
        // Look up by reference first: the common case allocates nothing.
        if let Some(s) = routes
            .iter_mut()
            .find(|((m, r), _)| m == method && r == route)
            .map(|(_, s)| s)
        {
            return f(s);
        }
        f(routes
            .entry((method.to_owned(), route.to_owned()))
            .or_default())
    }

    pub fn begin(&self, method: &str, route: &str) {
        self.with_route(method, route, |s| s.in_flight += 1);
    }

    /// A request ended (`begin` was called for it).
    pub fn end(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.with_route(method, route, |s| {
            s.in_flight -= 1;
            match s.statuses.iter_mut().find(|(st, _)| *st == status) {
                Some((_, n)) => *n += 1,
                None => s.statuses.push((status, 1)),
            }
            let slot = BUCKETS
                .iter()
                .position(|&le| seconds <= le)
                .unwrap_or(BUCKETS.len());
            s.buckets[slot] += 1;
            s.sum += seconds;
            s.count += 1;
        });
    }

    pub fn spawned(&self) {
        self.spawns.fetch_add(1, Ordering::Relaxed);
    }

    pub fn limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub fn served(&self) {
        self.front_served.fetch_add(1, Ordering::Relaxed);
    }

    pub fn forwarded(&self) {
        self.front_forwarded.fetch_add(1, Ordering::Relaxed);
    }

    /// (answered by the front, handed to the app).
    pub fn front_counts(&self) -> (u64, u64) {
        (
            self.front_served.load(Ordering::Relaxed),
            self.front_forwarded.load(Ordering::Relaxed),
        )
    }

    pub fn spawns(&self) -> u64 {
        self.spawns.load(Ordering::Relaxed)
    }

    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }

    /// Every (method, route) seen so far and its counters.
    pub fn snapshot(&self) -> Vec<((String, String), RouteStats)> {
        let routes = self.routes.lock();
        let mut out: Vec<_> = routes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// A concurrency cap: at most `cap` holders at once.
pub struct Slots {
    cap: usize,
    used: AtomicUsize,
}

impl Slots {
    pub fn new(cap: usize) -> Self {
        Slots {
            cap,
            used: AtomicUsize::new(0),
        }
    }

    pub fn try_acquire(&self) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cap).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn release(&self) {
        // Never below zero, even if a caller releases twice.
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    pub fn cap(&self) -> usize {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_and_statuses() {
        let s = HttpStats::default();
        s.begin("POST", "/x");
        s.begin("POST", "/x");
        s.end("POST", "/x", 200, 0.0004);
        s.end("POST", "/x", 404, 100.0);
        let snap = s.snapshot();
        let (_, r) = &snap[0];
        assert_eq!(r.in_flight, 0);
        assert_eq!(r.statuses, vec![(200, 1), (404, 1)]);
        assert_eq!(r.buckets[0], 1);
        assert_eq!(r.buckets[BUCKETS.len()], 1);
        assert_eq!(r.count, 2);
    }

    #[test]
    fn slots_cap_and_release() {
        let s = Slots::new(2);
        assert!(s.try_acquire() && s.try_acquire());
        assert!(!s.try_acquire());
        s.release();
        assert!(s.try_acquire());
        s.release();
        s.release();
        s.release();
        assert_eq!(s.used(), 0);
    }
}
