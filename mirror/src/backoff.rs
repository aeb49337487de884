//! Capped exponential backoff with jitter between mirror cycles, so a source or
//! destination that stays down costs a retry every few seconds, not a busy loop, and many
//! mirrors that failed together do not retry in lockstep.

use std::time::Duration;

/// The first delay after a failure.
pub const INITIAL: Duration = Duration::from_millis(200);
/// The largest delay.
pub const MAX: Duration = Duration::from_secs(30);

/// Delays `INITIAL · 2ⁿ` capped at `MAX`, each drawn uniformly from its upper half.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff whose jitter is seeded with `seed` (any value; 0 is fine).
    pub fn new(seed: u64) -> Self {
        Backoff {
            attempt: 0,
            // xorshift must not start at zero.
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The delay before the next retry; each call doubles the ceiling up to [`MAX`].
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = INITIAL
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(MAX);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let span = (ceiling - half).as_millis() as u64;
        half + Duration::from_millis(self.random() % (span + 1))
    }

    /// Starts over from [`INITIAL`] (after a cycle that ran long enough to count as healthy).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The number of delays handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_from_initial_to_the_cap_with_jitter_in_the_upper_half() {
        for seed in 0..50 {
            let mut b = Backoff::new(seed);
            let mut ceiling = INITIAL;
            for _ in 0..40 {
                let d = b.next_delay();
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "{d:?} outside {ceiling:?}"
                );
                assert!(d <= MAX);
                ceiling = (ceiling * 2).min(MAX);
            }
            assert!(b.next_delay() >= MAX / 2, "stays at the cap");
        }
    }

    #[test]
    fn reset_starts_over_and_jitter_differs_between_seeds() {
        let mut b = Backoff::new(7);
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= INITIAL);
        let draws = |seed| {
            let mut b = Backoff::new(seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_ne!(draws(1), draws(2));
    }
}
