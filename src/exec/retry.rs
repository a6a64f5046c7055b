//! The retry schedule: exponential backoff with full jitter.
//!
//! backon (not the unmaintained `backoff`, RUSTSEC-2025-0012) gives the exponential
//! ceiling for each attempt; the jitter is drawn here, uniformly in `[0, ceiling]`
//! ("full jitter"), from a seeded generator, so a schedule is reproducible in tests and
//! a throttled window of requests spreads out instead of retrying in lockstep.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per object in one run, the first included (`--max-attempts`).
    pub max_attempts: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 10, min_delay: Duration::from_millis(100), max_delay: Duration::from_secs(20) }
    }
}

impl RetryPolicy {
    /// The ceilings of the delays after attempts 1, 2, … `max_attempts - 1`.
    pub fn ceilings(&self) -> Vec<Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build()
            .collect()
    }

    /// The delay before attempt `attempt + 1`, after `attempt` failed (1-based), given a
    /// uniform draw `u` in [0, 1). None when no attempt is left.
    pub fn delay(&self, attempt: u32, u: f64) -> Option<Duration> {
        if attempt == 0 || attempt >= self.max_attempts {
            return None;
        }
        let exp = 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let ceiling = self.min_delay.mul_f64(exp).min(self.max_delay);
        Some(ceiling.mul_f64(u.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Rng;

    #[test]
    fn ceilings_double_up_to_the_maximum_and_stop_at_max_attempts() {
        let p = RetryPolicy { max_attempts: 10, ..Default::default() };
        let ms: Vec<u128> = p.ceilings().iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 6400, 12800, 20000]);
        // Our own computation agrees with backon's for every attempt (to the microsecond:
        // backon's float arithmetic gives 200.000003 ms).
        for (i, c) in p.ceilings().iter().enumerate() {
            let ours = p.delay(i as u32 + 1, 1.0).unwrap();
            assert_eq!(ours.as_micros(), c.as_micros(), "attempt {}", i + 1);
        }
        assert_eq!(p.delay(10, 0.5), None, "no 11th attempt");
        assert_eq!(RetryPolicy { max_attempts: 1, ..p }.delay(1, 0.5), None);
    }

    #[test]
    fn full_jitter_spreads_delays_over_the_whole_range() {
        let p = RetryPolicy::default();
        let mut rng = Rng::new(7);
        let delays: Vec<f64> = (0..10_000).map(|_| p.delay(4, rng.unit()).unwrap().as_secs_f64()).collect();
        let (min, max) = delays.iter().fold((f64::MAX, 0f64), |(a, b), &d| (a.min(d), b.max(d)));
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        assert!(min < 0.01 && max > 0.79 && max <= 0.8, "min {min} max {max}");
        assert!((mean - 0.4).abs() < 0.02, "mean {mean} should be half the 0.8 s ceiling");
    }
}
