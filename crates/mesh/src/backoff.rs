//! Reconnect delays: exponential, with full jitter, so peers that lost the
//! same node do not all knock again at the same instant.

use std::time::Duration;

/// The delays before successive reconnect attempts.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    ceiling: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self { min, max: max.max(min), ceiling: min }
    }

    /// The next delay: uniform in `[min, ceiling]`, and the ceiling doubles.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        if ceiling <= self.min {
            return self.min;
        }
        rand::random_range(self.min..=ceiling)
    }

    /// After a connection that worked: start from the minimum again.
    pub(crate) fn reset(&mut self) {
        self.ceiling = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_reset() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(80));
        let mut backoff = Backoff::new(min, max);
        assert_eq!(backoff.next_delay(), min);
        let delays: Vec<_> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays.iter().all(|d| *d >= min && *d <= max));
        assert_eq!(backoff.ceiling, max);
        backoff.reset();
        assert_eq!(backoff.next_delay(), min);
    }
}
