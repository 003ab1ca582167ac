//! The gateway's accept loop: hyper's HTTP/1.1 over connections admitted by
//! [`Connections`] (cap, idle timeout, forced close) and secured by a
//! [`ServerTransport`] (HTTPS unless in development), with graceful
//! shutdown of the connections it serves. Every request carries its
//! connection's [`consensusdb_types::Connection`]: who is calling.
//!
//! hyper answers a few malformed requests itself, before any handler runs,
//! with an empty body: its parser is configured past the gateway's own
//! limits ([`super::limits`]), so only requests far beyond them (over
//! 64 KiB of request target, about 400 KB or 256 fields of headers) meet
//! hyper's bare 414 or 431.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::Gateway;
use crate::connections::Connections;
use crate::tls::ServerTransport;

/// Header fields hyper's parser takes (the gateway refuses more than
/// [`super::limits::MAX_HEADERS`] itself, with a JSON answer).
const PARSER_MAX_HEADERS: usize = 256;
/// A client has this long to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Completes once draining starts (the watch's guard is not held on).
async fn draining_starts(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|draining| *draining).await;
}

/// Serves the gateway on `listener` until `shutdown` completes: from then
/// on `/readyz` answers 503, no new connection is accepted, and requests
/// in flight finish before this returns (or are cut when `connections` are
/// closed, after the node's shutdown grace period).
pub async fn serve_http(
    gateway: Gateway,
    listener: TcpListener,
    transport: ServerTransport,
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let readiness = gateway.readiness.clone();
    let sampler = {
        let (rates, metrics) = (gateway.rates.clone(), gateway.metrics.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(super::status_page::RATE_SAMPLE);
            loop {
                let now = tick.tick().await;
                rates.sample(now.into_std(), metrics.totals());
            }
        })
    };
    let app = super::router(gateway);
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_headers(PARSER_MAX_HEADERS);
    let (draining, drain) = watch::channel(false);
    let mut accepted = Box::pin(crate::tls::secure(connections.accept(listener), transport));
    let mut shutdown = pin!(shutdown);
    let mut served = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(Ok(stream)) = accepted.next() => {
                let caller = stream.connection().clone();
                let app = app.clone().map_request(move |mut request: axum::extract::Request<_>| {
                    request.extensions_mut().insert(caller.clone());
                    request
                });
                let connection = http1.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
                let mut drain = drain.clone();
                served.spawn(async move {
                    let mut connection = pin!(connection);
                    tokio::select! {
                        _ = connection.as_mut() => {}
                        () = draining_starts(&mut drain) => {
                            // Finish the request in flight, then close.
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                        }
                    }
                });
            }
            Some(_) = served.join_next(), if !served.is_empty() => {}
        }
    }
    // No new connection from here on: the listener closes.
    drop(accepted);
    readiness.begin_shutdown();
    draining.send_replace(true);
    while served.join_next().await.is_some() {}
    sampler.abort();
    Ok(())
}
