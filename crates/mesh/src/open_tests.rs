//! Opening the mesh over what the store remembers of the cluster.

use std::sync::Arc;

use consensusdb_storage::{StorageError, Store, StoreOptions};

use crate::peer_events::Heartbeat;
use crate::{Mesh, MeshConfig, PlainConnector};

async fn open_with_membership(record: &[u8], config: MeshConfig) -> Result<Mesh, StorageError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(StoreOptions::new(dir.path())).expect("store opens");
    store.save_membership(record.to_vec()).await.expect("saved");
    Mesh::open(store, config, Arc::new(PlainConnector::default())).await
}

#[tokio::test]
async fn a_damaged_stored_membership_stops_the_node_naming_it() {
    let error =
        open_with_membership(&[0xff, 0xff, 0xff], MeshConfig::default()).await.err().expect("refused");
    assert!(matches!(error, StorageError::Corrupt(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("column family `peers`, key `membership`"), "{message}");
    assert!(message.contains("cluster.forget_damaged_membership"), "says how to start anyway: {message}");
}

#[tokio::test]
async fn a_forgotten_membership_holds_purges_until_a_peer_lists_its_members() {
    let config = MeshConfig { forget_damaged_membership: true, ..MeshConfig::default() };
    let mesh = open_with_membership(&[0xff, 0xff, 0xff], config).await.expect("opens from the seeds");
    assert!(mesh.inner.peers().members_incomplete(), "no purge while the members are unknown");
    mesh.inner.take_heartbeat("10.0.0.2:4482", Heartbeat::default());
    assert!(!mesh.inner.peers().members_incomplete(), "a peer's list of members lifts the wait");
}
