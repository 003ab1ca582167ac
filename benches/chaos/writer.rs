//! The writers: a few tasks per node, each on its own connection to its
//! node, writing for the whole run and recording every answer in the
//! model. When their node is down they reconnect with a small backoff; a
//! write is sent only on a connection that was established, and a write
//! whose connection broke (or that timed out, or was answered UNAVAILABLE)
//! is recorded as of unknown outcome.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use consensusdb_proto::v1;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::grpc::{self, Records};
use crate::model::{self, Model};
use crate::workload::{KeySpace, Op, Put, Values, next_op};

/// Backoff between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// One writer's settings.
pub struct Writer {
    /// `n{node}w{writer}`, the prefix of its values.
    pub label: String,
    /// Its node's gRPC address.
    pub addr: SocketAddr,
    /// Pause between writes.
    pub pause: Duration,
    /// Its random seed.
    pub seed: u64,
}

fn put_request(put: &Put) -> v1::PutRequest {
    v1::PutRequest {
        key: Some(put.key.to_proto()),
        value: put.value.clone(),
        compression: v1::Compression::None.into(),
        if_absent: put.if_absent,
        ttl_ms: put.ttl_ms,
        write_concern: 0,
        client_key_fingerprint: Vec::new(),
    }
}

/// Sends `op`; records its outcome in `model`. Returns false if the
/// connection should be dropped (the outcome was unknown).
async fn send(client: &mut Records, op: &Op, model: &Mutex<Model>) -> bool {
    let answer = match op {
        Op::Put(put) => client.put(put_request(put)).await.map(|r| vec![r.into_inner().head]),
        Op::Remove(key) => client
            .remove(v1::RemoveRequest { key: Some(key.to_proto()) })
            .await
            .map(|r| vec![r.into_inner().head]),
        Op::Batch(puts) => client
            .put_batch(v1::PutBatchRequest {
                records: puts.iter().map(put_request).collect(),
                write_concern: 0,
            })
            .await
            .map(|r| r.into_inner().heads.into_iter().map(Some).collect()),
    };
    let writes: Vec<_> = match op {
        Op::Put(put) => vec![(&put.key, Some(put.value.clone()))],
        Op::Remove(key) => vec![(key, None)],
        Op::Batch(puts) => puts.iter().map(|put| (&put.key, Some(put.value.clone()))).collect(),
    };
    let mut model = model.lock().expect("the model lock is never poisoned");
    match answer {
        Ok(heads) => {
            if heads.len() != writes.len() {
                model.anomalies.push(format!("{} heads answered for {} writes", heads.len(), writes.len()));
            }
            for ((key, value), head) in writes.into_iter().zip(heads) {
                model.acked(key, head.as_ref(), value);
            }
            true
        }
        Err(status) => {
            let unknown = model::may_be_written(status.code());
            model.error(&status, unknown);
            if unknown {
                for (key, value) in writes {
                    model.unknown(key, value);
                }
            } else if status.code() == tonic::Code::InvalidArgument {
                model.anomalies.push(format!("a write was refused as invalid: {}", status.message()));
            }
            !unknown
        }
    }
}

/// Starts the writer; it writes until `stop` turns true.
pub fn spawn(
    writer: Writer,
    keys: Arc<KeySpace>,
    model: Arc<Mutex<Model>>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(writer.seed);
        let mut values = Values::new(writer.label.clone());
        let mut client: Option<Records> = None;
        let mut backoff = BACKOFF_MIN;
        while !*stop.borrow() {
            let Some(connected) = client.as_mut() else {
                match grpc::records(writer.addr).await {
                    Ok(fresh) => {
                        client = Some(fresh);
                        backoff = BACKOFF_MIN;
                    }
                    Err(_) => {
                        let jittered = backoff.mul_f64(rng.random_range(0.5..1.0));
                        let _ = tokio::time::timeout(jittered, stop.changed()).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
                continue;
            };
            let op = next_op(&mut rng, &keys, &mut values);
            if !send(connected, &op, &model).await {
                client = None;
            }
            let _ = tokio::time::timeout(writer.pause, stop.changed()).await;
        }
    })
}
