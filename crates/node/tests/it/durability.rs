//! Close and reopen: every acknowledged record is still there.

use consensusdb_proto::v1;

use crate::support::*;

#[tokio::test]
async fn every_acknowledged_record_survives_close_and_reopen() {
    let temp = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(temp.path(), |_| {}).await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut client = node.client.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..50 {
                    let k = key("tenant", "EVENTS", &format!("w{w}"), Some(at_ms(i)));
                    let value = format!("{w}-{i}").into_bytes();
                    must_put(&mut client, k.clone(), &value).await;
                    acked.push((k, value));
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }
    let first_node_seq =
        must_put(&mut node.client.clone(), key("tenant", "EVENTS", "last", None), b"x").await.seq;
    node.stop().await;

    let mut node = TestNode::start_in(temp.path(), |_| {}).await;
    for (k, value) in &acked {
        assert_eq!(&must_get(&mut node.client, k.clone()).await.value, value);
    }
    let range = v1::GetRangeRequest {
        row: Some(row("tenant", "EVENTS", "w3")),
        limit: 100,
        page_token: vec![],
        read: None,
        window: None,
    };
    assert_eq!(node.client.get_range(range).await.unwrap().into_inner().records.len(), 50);
    let next = must_put(&mut node.client, key("tenant", "EVENTS", "after", None), b"x").await.seq;
    assert_eq!(next, first_node_seq + 1, "seqs continue after a restart");
    node.stop().await;
}
