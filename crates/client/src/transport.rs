//! The node endpoints, their connections, and the one retry loop with
//! failover that every call goes through.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use consensusdb_proto::v1::records_client::RecordsClient;
use consensusdb_types::ErrorCode;
use consensusdb_types::error::error_chain;
use consensusdb_types::limits::GRPC_MESSAGE_LIMIT;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::bearer::{AuthorizedChannel, BearerToken};
use crate::credentials::{Credentials, endpoint_for};
use crate::error::{Error, Result};
use crate::retry::{Replay, RetryPolicy, is_retryable};

/// The settings the transport needs from the client builder.
#[derive(Debug, Clone)]
pub(crate) struct TransportOptions {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub credentials: Option<Credentials>,
    pub token: BearerToken,
}

/// The records client every call gets.
pub(crate) type Records = RecordsClient<AuthorizedChannel>;

/// One node address and its connection, opened on first use.
#[derive(Debug)]
struct Node {
    url: String,
    endpoint: Endpoint,
    channel: Mutex<Option<Channel>>,
}

/// Every node the client knows, and which one it currently prefers.
#[derive(Debug)]
pub(crate) struct Transport {
    nodes: Vec<Node>,
    /// The node that answered last; calls start there and move on when it
    /// fails, so a healthy client sticks to one node.
    preferred: AtomicUsize,
    options: TransportOptions,
}

/// A node address as a URL: `host:port` alone means `https://host:port`
/// (nodes serve TLS unless started with `--insecure-plaintext`); a scheme
/// other than `http` or `https` is refused, saying why.
pub fn endpoint_url(address: &str) -> std::result::Result<String, String> {
    let address = address.trim();
    match address.split_once("://") {
        None if address.is_empty() => Err("is empty; give host:port or a URL".into()),
        None => Ok(format!("https://{address}")),
        Some(("http" | "https", rest)) if !rest.is_empty() => Ok(address.to_string()),
        Some((scheme, _)) => Err(format!(
            "{address:?} is not a node address: give host:port or an http:// or https:// URL, not {scheme}://"
        )),
    }
}

impl Transport {
    /// Validates the addresses; nothing is connected yet.
    pub(crate) fn new(urls: Vec<String>, options: TransportOptions) -> Result<Self> {
        if urls.is_empty() {
            return Err(Error::local(
                ErrorCode::InvalidArgument,
                "endpoints: at least one node address is needed",
            ));
        }
        let nodes = urls
            .into_iter()
            .enumerate()
            .map(|(i, url)| {
                let url = endpoint_url(&url).map_err(|why| {
                    Error::from(consensusdb_types::FieldError::new(format!("endpoints[{i}]"), why))
                })?;
                if options.token.is_set() && !url.starts_with("https://") {
                    return Err(Error::from(consensusdb_types::FieldError::new(
                        format!("endpoints[{i}]"),
                        format!("{url} is plaintext (http://): a bearer token is never sent in the clear; use https://"),
                    )));
                }
                let endpoint = endpoint_for(&url, options.credentials.as_ref(), &format!("endpoints[{i}]"))?
                    .connect_timeout(options.connect_timeout)
                    .tcp_nodelay(true)
                    // Notice a dead node on an idle connection within seconds,
                    // not at the next request's timeout.
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_timeout(Duration::from_secs(5))
                    .keep_alive_while_idle(true);
                Ok(Node { url, endpoint, channel: Mutex::new(None) })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { nodes, preferred: AtomicUsize::new(0), options })
    }

    /// The configured per-request timeout.
    pub(crate) fn default_timeout(&self) -> Duration {
        self.options.timeout
    }

    /// The address of the node calls currently go to.
    pub(crate) fn current_endpoint(&self) -> &str {
        &self.nodes[self.preferred.load(Ordering::Relaxed) % self.nodes.len()].url
    }

    /// Connects to the first reachable node, or explains why none is.
    pub(crate) async fn connect_any(&self) -> Result<()> {
        let mut last = None;
        for index in 0..self.nodes.len() {
            match self.client(index).await {
                Ok(_) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(());
                }
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| Error::local(ErrorCode::Unavailable, "no endpoints")))
    }

    /// The node's client, connecting if it has no connection yet. A
    /// connection, once open, reconnects by itself when it breaks.
    async fn client(&self, index: usize) -> Result<Records> {
        let node = &self.nodes[index];
        let mut slot = node.channel.lock().await;
        let channel = match slot.as_ref() {
            Some(channel) => channel.clone(),
            None => {
                let channel = node
                    .endpoint
                    .connect()
                    .await
                    .map_err(|e| Error::unreachable(&node.url, error_chain(&e)))?;
                slot.insert(channel).clone()
            }
        };
        Ok(RecordsClient::new(self.options.token.on(channel))
            .max_decoding_message_size(GRPC_MESSAGE_LIMIT)
            .max_encoding_message_size(GRPC_MESSAGE_LIMIT))
    }

    /// Runs `attempt` against the preferred node, failing over to the others
    /// with backoff while the failure is retryable under `replay`, the retry
    /// budget lasts and `timeout` (or the default) has not passed.
    ///
    /// `attempt` gets the client and the time left; it must send the same
    /// request every time (same TimeUUIDs), which is what makes a retried
    /// write idempotent.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        replay: Replay,
        timeout: Option<Duration>,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(Records, Duration) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let deadline = Instant::now() + timeout.unwrap_or(self.options.timeout);
        let policy = self.options.retry;
        let mut sent = 0u32;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let index = self.preferred.load(Ordering::Relaxed) % self.nodes.len();
            let url = &self.nodes[index].url;
            let failure = match self.client(index).await {
                // Nothing was sent, so any request may go to the next node.
                Err(unreachable) => unreachable,
                Ok(client) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    sent += 1;
                    match tokio::time::timeout(left, attempt(client, left)).await {
                        Ok(Ok(value)) => return Ok(value),
                        Ok(Err(status)) => {
                            let error = Error::from_status(&status, url).with_attempts(sent);
                            if !is_retryable(status.code(), replay) {
                                return Err(error);
                            }
                            error
                        }
                        Err(_) => return Err(deadline_error(url, sent)),
                    }
                }
            };
            self.fail_over(index);
            if tries >= policy.max_attempts.max(1) {
                return Err(failure.with_attempts(sent));
            }
            let pause = policy.backoff(tries);
            if Instant::now() + pause >= deadline {
                return Err(failure.with_attempts(sent));
            }
            tracing::debug!(endpoint = %url, error = %failure, "retrying on the next node");
            tokio::time::sleep(pause).await;
        }
    }

    /// Moves the preference off a failed node (unless another call already did).
    fn fail_over(&self, failed: usize) {
        let next = (failed + 1) % self.nodes.len();
        let _ = self.preferred.compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// `message` as a request that tells the node how long the caller waits
/// (`grpc-timeout`): a write the node cannot give a seq in that time is not
/// applied, and a write concern answers before it passes.
pub(crate) fn within<T>(message: T, left: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(left);
    request
}

fn deadline_error(url: &str, sent: u32) -> Error {
    Error::local(ErrorCode::DeadlineExceeded, "no answer before the request's timeout")
        .with_endpoint(url)
        .with_attempts(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_never_sent_in_the_clear_nor_printed() {
        let refused =
            crate::Client::builder().endpoint("http://127.0.0.1:1").token("cdbt_secret").build_lazy();
        let error = refused.expect_err("a token over plaintext");
        assert!(error.to_string().contains("never sent in the clear"), "{error}");
        let builder = crate::Client::builder().endpoint("https://127.0.0.1:1").token("cdbt_secret");
        assert!(!format!("{builder:?}").contains("cdbt_secret"), "the builder's debug form hides the token");
        let bad = crate::Client::builder().endpoint("https://127.0.0.1:1").token("caf\u{e9}").build_lazy();
        let bad = bad.expect_err("not ASCII");
        assert!(bad.to_string().contains("printable ASCII"), "{bad}");
    }

    #[test]
    fn a_bare_host_port_means_http_and_other_schemes_are_refused() {
        assert_eq!(endpoint_url("127.0.0.1:4482").unwrap(), "https://127.0.0.1:4482");
        assert_eq!(endpoint_url(" http://a:1 ").unwrap(), "http://a:1");
        assert_eq!(endpoint_url("https://a:1").unwrap(), "https://a:1");
        assert!(endpoint_url("ftp://a:1").unwrap_err().contains("ftp://"));
        assert!(endpoint_url("").is_err());
        assert!(endpoint_url("http://").is_err());
    }
}
