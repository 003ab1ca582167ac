//! Skewed clocks: a node far off its peers' clocks stops stamping client
//! writes, and a write that could never become current says so.

use consensusdb_client::{ErrorCode, Record};
use consensusdb_testkit::TestCluster;

use crate::{CONVERGE, bounded, key, wait_for_status};

const HOUR_MS: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_whose_clock_is_an_hour_fast_stops_stamping_client_writes() {
    bounded(async {
        let cluster = TestCluster::start_with(3, |i, config| {
            if i == 2 {
                config.dev.clock_skew_ms = HOUR_MS;
            }
        })
        .await;
        let refusing = wait_for_status(&cluster, 2, "refuse writes", |s| !s.clock_refusal.is_empty())
            .await
            .clock_refusal;
        assert!(refusing.contains("2 of the 2 peers") && refusing.contains("ahead"), "{refusing}");
        let refused = cluster.client(2).put(Record::new(key("k"), "late")).await.expect_err("refused");
        assert_eq!(refused.code(), ErrorCode::Unavailable, "{refused}");
        assert!(refused.to_string().contains("clock"), "{refused}");
        // The healthy nodes go on, and see how far off node 2 is.
        for healthy in 0..2 {
            cluster.client(healthy).put(Record::new(key(&format!("ok{healthy}")), "v")).await.expect("put");
            let status = cluster.status(healthy).await;
            assert!(status.clock_refusal.is_empty(), "node {healthy}: {}", status.clock_refusal);
            let node2 =
                status.peers.iter().find(|p| p.address == cluster.nodes[2].addr.to_string()).expect("peer");
            let offset = node2.clock_offset_ms.expect("measured");
            assert!((offset - HOUR_MS).abs() < 5_000, "node 2 is an hour ahead, measured {offset} ms");
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_put_that_could_never_become_current_is_refused_and_says_why() {
    bounded(async {
        // The clock check is off here, so node 2 (an hour fast) writes.
        let cluster = TestCluster::start_with(3, |i, config| {
            config.cluster.max_clock_offset_ms = 0;
            if i == 2 {
                config.dev.clock_skew_ms = HOUR_MS;
            }
        })
        .await;
        cluster.client(2).put(Record::new(key("k"), "from the future")).await.expect("put");
        cluster.converge(CONVERGE).await;
        // A later put elsewhere would lose to that stamp for an hour: it is
        // refused, saying why, instead of answering success.
        let refused = cluster.client(0).put(Record::new(key("k"), "now")).await.expect_err("refused");
        assert_eq!(refused.code(), ErrorCode::FailedPrecondition, "{refused}");
        assert!(refused.to_string().contains("clock"), "{refused}");
        let kept = cluster.client(0).get(key("k")).await.expect("get").expect("present");
        assert_eq!(kept.value, b"from the future");
        cluster.shutdown().await;
    })
    .await;
}
