//! Retry policy and expiry rule of management-api.md §6.5, as pure functions of time and a random
//! source so that workers and tests agree on them.

use std::time::Duration;

use rand::Rng;

use crate::message::Millis;

/// After this many provider calls a delivery is `FAILED`.
pub const MAX_ATTEMPTS: u32 = 10;

/// Cap of the exponential part of the backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Wait after attempt `attempt` (1-based) failed with a retryable outcome:
/// `min(300 s, 2^(attempt-1) s)` times a random factor in [0.8, 1.2], and at least `retry_after`.
pub fn backoff<R: Rng + ?Sized>(attempt: u32, retry_after: Option<Duration>, rng: &mut R) -> Duration {
    let exponent = attempt.max(1) - 1;
    // 2^9 s is already above the cap; avoid shifting past the integer width.
    let base = if exponent >= 9 {
        MAX_BACKOFF
    } else {
        Duration::from_secs(1 << exponent).min(MAX_BACKOFF)
    };
    let jittered = base.mul_f64(rng.random_range(0.8..=1.2));
    match retry_after {
        Some(floor) if floor > jittered => floor,
        _ => jittered,
    }
}

/// Whether the validity period has ended at `now` (a delivery found so becomes `EXPIRED`).
pub fn is_expired(expires_at: Millis, now: Millis) -> bool {
    now >= expires_at
}

/// What happens to a delivery whose attempt failed with a retryable outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRetryable {
    /// Try again at this time (Unix milliseconds): the delivery stays `QUEUED`.
    RetryAt(Millis),
    /// The retry would start after the end of validity: `EXPIRED`, no further attempt.
    Expired,
    /// [`MAX_ATTEMPTS`] calls made: `FAILED`.
    Exhausted,
}

/// Decides the next step after attempt `attempts` (the number of provider calls made so far,
/// including the one that just failed) ended retryably at `now`.
pub fn after_retryable<R: Rng + ?Sized>(
    attempts: u32,
    retry_after: Option<Duration>,
    now: Millis,
    expires_at: Millis,
    rng: &mut R,
) -> AfterRetryable {
    if attempts >= MAX_ATTEMPTS {
        return AfterRetryable::Exhausted;
    }
    let wait = backoff(attempts, retry_after, rng);
    let at = now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
    if is_expired(expires_at, at) {
        AfterRetryable::Expired
    } else {
        AfterRetryable::RetryAt(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// An `RngCore` that always yields the same word: drives the factor to its ends.
    struct Fixed(u64);
    impl rand::RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            self.0 as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            for b in dst {
                *b = self.0 as u8;
            }
        }
    }

    #[test]
    fn backoff_doubles_within_the_jitter_band_and_caps_at_300s() {
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..=12u32 {
            let base = 2f64.powi(attempt as i32 - 1).min(300.0);
            for _ in 0..200 {
                let d = backoff(attempt, None, &mut rng).as_secs_f64();
                assert!(
                    d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                    "attempt {attempt}: {d}"
                );
            }
        }
        // The factor really spreads over the band (not a constant).
        let spread: Vec<f64> = (0..200).map(|_| backoff(4, None, &mut rng).as_secs_f64()).collect();
        let min = spread.iter().cloned().fold(f64::MAX, f64::min);
        let max = spread.iter().cloned().fold(0.0, f64::max);
        assert!(min < 6.8 && max > 9.2, "{min}..{max}");
        assert!(backoff(0, None, &mut rng) <= Duration::from_millis(1200));
        assert!(backoff(u32::MAX, None, &mut rng) <= Duration::from_secs(360));
    }

    #[test]
    fn backoff_honours_retry_after_as_a_floor() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            backoff(1, Some(Duration::from_secs(30)), &mut rng),
            Duration::from_secs(30)
        );
        assert_eq!(
            backoff(10, Some(Duration::from_secs(900)), &mut rng),
            Duration::from_secs(900)
        );
        // A small Retry-After does not shorten the exponential wait.
        let d = backoff(6, Some(Duration::from_secs(1)), &mut rng);
        assert!(d >= Duration::from_secs_f64(32.0 * 0.8), "{d:?}");
        // Both ends of the band.
        let low = backoff(10, None, &mut Fixed(0)).as_secs_f64();
        let high = backoff(10, None, &mut Fixed(u64::MAX)).as_secs_f64();
        assert!(
            (low - 240.0).abs() < 1e-6 && (high - 360.0).abs() < 1e-3,
            "{low} {high}"
        );
    }

    #[test]
    fn expiry_rule() {
        assert!(!is_expired(1000, 999));
        assert!(is_expired(1000, 1000));
        assert!(is_expired(1000, 5000));
    }

    #[test]
    fn next_step_after_a_retryable_failure() {
        let mut rng = StdRng::seed_from_u64(3);
        let now = 1_000_000;
        let far = now + 86_400_000;
        match after_retryable(1, None, now, far, &mut rng) {
            AfterRetryable::RetryAt(at) => assert!((now + 800..=now + 1200).contains(&at)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            after_retryable(3, Some(Duration::from_secs(60)), now, far, &mut rng),
            AfterRetryable::RetryAt(now + 60_000)
        );
        // The wait would end after validity: expire now instead of trying later.
        assert_eq!(
            after_retryable(2, None, now, now + 1000, &mut rng),
            AfterRetryable::Expired
        );
        assert_eq!(
            after_retryable(1, Some(Duration::from_secs(5)), now, now + 4000, &mut rng),
            AfterRetryable::Expired
        );
        // The tenth failed call ends the delivery whatever the validity.
        assert_eq!(
            after_retryable(MAX_ATTEMPTS, None, now, far, &mut rng),
            AfterRetryable::Exhausted
        );
        assert_ne!(after_retryable(9, None, now, far, &mut rng), AfterRetryable::Exhausted);
    }
}
