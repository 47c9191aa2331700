//! Token-bucket rate limits of mobile-api.md §1.7 (per installation, per client IP for creates)
//! and per application (docs/decisions.md), kept in this process's memory.
//!
//! Hand-written rather than taken from a crate (governor): the spec needs buckets keyed by
//! arbitrary strings that are dropped once refilled, so memory stays bounded whatever ids a
//! client sends, and an exact `Retry-After` in whole seconds; that is a few lines here.
//! With several server processes each keeps its own buckets, so the effective limit is
//! per process — a limit, not a correctness rule (design.md, Scale-out).

use std::{collections::HashMap, sync::Mutex, time::Instant};

/// One limit: `rps` sustained, `burst` at most; `rps == 0` disables it.
pub struct RateLimiter {
    rps: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// How many buckets may exist before full ones are swept.
const SWEEP_AT: usize = 10_000;

impl RateLimiter {
    /// A limiter of `rps` per second with `burst` tokens.
    pub fn new(rps: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            rps,
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`; `Err(retry_after_seconds)` (at least 1) when none is left.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        if self.rps <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= SWEEP_AT {
            let (rps, burst) = (self.rps, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rps < burst);
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.rps).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rps;
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_with_retry_after() {
        let l = RateLimiter::new(1.0, 3.0);
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        assert_eq!(l.check("a"), Err(1));
        assert!(l.check("b").is_ok(), "buckets are per key");
    }

    #[test]
    fn retry_after_is_the_whole_seconds_until_the_next_token() {
        let l = RateLimiter::new(0.1, 1.0);
        assert!(l.check("a").is_ok());
        // One token every 10 s: the next one is 10 s away (rounded up, never 0).
        assert_eq!(l.check("a"), Err(10));
        let l = RateLimiter::new(1000.0, 1.0);
        assert!(l.check("a").is_ok());
        assert_eq!(l.check("a"), Err(1));
    }

    #[test]
    fn full_buckets_are_swept() {
        let l = RateLimiter::new(1_000_000.0, 2.0);
        for i in 0..SWEEP_AT + 10 {
            l.check(&i.to_string()).unwrap();
        }
        // Each bucket refilled within microseconds; the sweep at SWEEP_AT dropped them.
        let len = l.buckets.lock().unwrap().len();
        assert!(len < SWEEP_AT, "{len} buckets kept");
    }

    #[test]
    fn zero_disables() {
        let l = RateLimiter::new(0.0, 0.0);
        for _ in 0..1000 {
            assert!(l.check("a").is_ok());
        }
    }
}
