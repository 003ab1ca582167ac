//! When a failed attempt may be sent again, and how long to wait first.

use std::time::Duration;

use tonic::Code;

/// Whether a request may be sent again after an attempt that may have
/// reached a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Sending it twice has the effect of sending it once: reads, removes,
    /// touches, and puts whose key carries a TimeUUID (the retry reuses it).
    Safe,
    /// A put to a row's untimed record: a second copy could overwrite a
    /// newer write made in between, so it is only retried when the first
    /// attempt provably never left (the connection could not be opened).
    OnlyIfUnsent,
}

/// How many attempts a request gets and the backoff between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, counting the first (at least 1).
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry; it doubles per retry.
    pub initial_backoff: Duration,
    /// The largest backoff ceiling.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// No retries: every request is sent once.
    pub fn never() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The pause before retry number `retry` (1-based): "full jitter", a
    /// uniform draw below an exponentially growing ceiling, so clients that
    /// failed together do not come back together.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let ceiling =
            self.initial_backoff.saturating_mul(1 << retry.saturating_sub(1).min(16)).min(self.max_backoff);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// Whether a status received after sending may be retried on another node.
///
/// `Unknown` is included because this server never sends it: it is how
/// tonic reports a connection that broke mid-call. Bad input, missing
/// records, conflicts and requests too large are answers, not failures,
/// and are never retried.
pub(crate) fn is_retryable(code: Code, replay: Replay) -> bool {
    replay == Replay::Safe
        && matches!(code, Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_requests_retry_and_only_transient_codes() {
        assert!(is_retryable(Code::Unavailable, Replay::Safe));
        assert!(is_retryable(Code::Unknown, Replay::Safe));
        assert!(!is_retryable(Code::Unavailable, Replay::OnlyIfUnsent));
        for answer in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
        ] {
            assert!(!is_retryable(answer, Replay::Safe), "{answer:?}");
        }
    }

    #[test]
    fn backoff_stays_under_a_doubling_ceiling_capped_at_the_maximum() {
        let policy = RetryPolicy::default();
        for _ in 0..100 {
            assert!(policy.backoff(1) <= Duration::from_millis(25));
            assert!(policy.backoff(3) <= Duration::from_millis(100));
            assert!(policy.backoff(30) <= Duration::from_secs(1));
        }
    }
}
