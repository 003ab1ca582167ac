//! The gRPC health service reports the node's readiness: NOT_SERVING while
//! a bootstrap closes client writes, SERVING again once they reopen.

use std::time::{Duration, Instant};

use consensusdb_api::{
    ConnectionLimits, Connections, Metrics, READINESS_POLL, Readiness, RecordsApi, serve_grpc,
};
use consensusdb_storage::{Store, StoreOptions};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Asks for the whole server's status until it is `want`, for at most a few
/// polls of readiness.
async fn wait_for_status(client: &mut HealthClient<tonic::transport::Channel>, want: ServingStatus) {
    let deadline = Instant::now() + 20 * READINESS_POLL + Duration::from_secs(5);
    loop {
        let status = client
            .check(HealthCheckRequest { service: String::new() })
            .await
            .expect("health answers")
            .into_inner()
            .status();
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "health stayed {status:?}, expected {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn health_follows_readiness() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(StoreOptions::new(dir.path())).expect("store opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("bound");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = Metrics::new(store.counters()).expect("metrics register");
    let admin = consensusdb_types::Identity::parse("cdb://test/client/admin").expect("an identity");
    let access = consensusdb_access::Access::open(store.clone(), admin).await.expect("reads access");
    let server = tokio::spawn(serve_grpc(
        RecordsApi::new(store.clone(), metrics, "grpc"),
        access,
        Readiness::new(store.clone()),
        listener,
        // The gRPC health service over plaintext: what TLS adds is tested
        // with the node (crates/node/tests).
        consensusdb_api::ServerTransport::Plaintext,
        Connections::new(ConnectionLimits::default()),
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connects");
    let mut client = HealthClient::new(channel);
    wait_for_status(&mut client, ServingStatus::Serving).await;
    store.hold_writes(consensusdb_storage::WriteHold::Bootstrap, "a bootstrap is under way");
    wait_for_status(&mut client, ServingStatus::NotServing).await;
    store.release_writes(consensusdb_storage::WriteHold::Bootstrap);
    wait_for_status(&mut client, ServingStatus::Serving).await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server stops in time")
        .expect("server task")
        .expect("the server stops cleanly");
    store.close().await.expect("store closes");
}
