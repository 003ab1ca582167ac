//! Waiting for a condition rather than for a time: a fixed sleep is too
//! long on an idle machine and too short on a busy one.

use std::fmt::Debug;
use std::time::Duration;

use tokio::time::Instant;

/// How long to wait before checking a condition again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Checks `check` until it returns `Ok`, and returns what it holds. `Err`
/// carries what was seen instead: if the condition still fails after
/// `within`, the test fails naming `what` it waited for and showing the
/// last thing seen.
pub async fn eventually<T, E: Debug>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(done) => return done,
            Err(seen) if Instant::now() >= deadline => {
                panic!("{what}: not within {within:?}; last seen: {seen:#?}")
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}
