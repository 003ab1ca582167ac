//! Tokens, grants and revocations made on one node hold on every node:
//! they replicate through the mesh like any data.

use consensusdb_client::{ErrorCode, Record, RowKey};
use consensusdb_proto::v1;
use consensusdb_proto::v1::access_client::AccessClient;
use consensusdb_testkit::{TestCluster, eventually};

use crate::{CONVERGE, TEST_TIMEOUT};

fn record(minor: &str) -> Record {
    Record::new(RowKey::new("acme", "ORDERS", minor).at(None), b"v".to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_made_on_node_a_works_on_node_c_and_a_revocation_on_c_reaches_a() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = TestCluster::start(3).await;
        let mut on_first = AccessClient::new(cluster.admin_channel(0).await);
        let made = on_first
            .create_token(v1::CreateTokenRequest { name: "orders".into(), grants: vec!["write:acme".into()] })
            .await
            .expect("the admin makes a token")
            .into_inner();
        let token = made.secret_token;
        assert!(token.starts_with("cdbt_"), "the token is handed out once");

        // Node 2 accepts it once the token's record has replicated.
        let on_third = cluster.client_with_token(2, &token);
        eventually(CONVERGE, "the token works on node 2", async || on_third.put(record("o-1")).await).await;
        let outside =
            on_third.put(Record::new(RowKey::new("other", "ORDERS", "o").at(None), b"v".to_vec())).await;
        assert_eq!(outside.expect_err("outside the grant").code(), ErrorCode::PermissionDenied);

        // Revoked on node 2, it stops working on nodes 0 (where it was
        // made) and 1.
        let mut on_third_admin = AccessClient::new(cluster.admin_channel(2).await);
        on_third_admin
            .revoke_token(v1::RevokeTokenRequest { id_or_name: "orders".into() })
            .await
            .expect("node 2 knows the token and revokes it");
        for node in [0, 1] {
            let client = cluster.client_with_token(node, &token);
            eventually(CONVERGE, &format!("the revocation reaches node {node}"), async || {
                match client.put(record("o-2")).await {
                    Err(error) if error.code() == ErrorCode::Unauthenticated => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        }
        cluster.shutdown().await;
    })
    .await
    .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_grant_added_on_one_node_and_removed_on_another_holds_everywhere() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let cluster = TestCluster::start(3).await;
        cluster.client(0).put(record("o-1")).await.expect("the admin writes");
        let bob = cluster.client_named(2, "bob");
        let refused = bob.get(record("o-1").key().clone()).await.expect_err("no grant yet");
        assert_eq!(refused.code(), ErrorCode::PermissionDenied, "deny by default: {refused}");

        let identity = "cdb://consensusdb/client/bob";
        let mut on_first = AccessClient::new(cluster.admin_channel(0).await);
        on_first
            .add_grant(v1::AddGrantRequest { identity: identity.into(), grant: "read:acme".into() })
            .await
            .expect("grants");
        eventually(CONVERGE, "bob reads acme on node 2", async || bob.get(record("o-1").key().clone()).await)
            .await;
        let write = bob.put(record("o-2")).await.expect_err("read only");
        assert_eq!(write.code(), ErrorCode::PermissionDenied);

        let mut on_third = AccessClient::new(cluster.admin_channel(2).await);
        on_third
            .remove_grant(v1::RemoveGrantRequest { identity: identity.into(), grant: "read:acme".into() })
            .await
            .expect("removes the grant");
        let bob_on_first = cluster.client_named(0, "bob");
        eventually(CONVERGE, "the removal reaches node 0", async || {
            match bob_on_first.get(record("o-1").key().clone()).await {
                Err(error) if error.code() == ErrorCode::PermissionDenied => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        cluster.shutdown().await;
    })
    .await
    .expect("bounded");
}
