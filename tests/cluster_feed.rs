//! Cluster mode end to end: two service nodes (in this process) share one
//! real `nats-server -js` and one real PostgreSQL. A call on node 1 reaches
//! a dashboard on node 2 in cursor order and its record is read on node 2;
//! a dashboard resumes on a restarted node 2 with its cursor, missing and
//! repeating nothing.

mod common;

use std::path::Path;

use callwatch_proto::pb;
use callwatch_server::config::{Cluster, ServeConfig};
use callwatch_server::server::Server;
use callwatch_server::testkit::{NatsServer, PgServer};
use common::service::*;

fn node(data: &Path, name: &str, nats: &NatsServer, postgres: &str) -> ServeConfig {
    let mut cfg = config(data);
    cfg.cluster = Some(Cluster {
        node: name.into(),
        nats: vec![nats.url()],
        postgres: Some(postgres.into()),
    });
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_node_1_reaches_a_dashboard_on_node_2_which_resumes_after_a_restart() {
    let nats = NatsServer::start().expect("nats-server starts (scripts/setup.sh test installs it)");
    // PostgreSQL's client blocks: off the test's runtime.
    let (pg, db) = tokio::task::spawn_blocking(|| {
        let pg = PgServer::start().expect("PostgreSQL starts (scripts/setup.sh test installs it)");
        let db = pg.database("cluster").unwrap();
        (pg, db)
    })
    .await
    .unwrap();
    let (data1, data2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let n1 = Server::start(node(data1.path(), "n1", &nats, &db)).await.unwrap();
    let n2 = Server::start(node(data2.path(), "n2", &nats, &db)).await.unwrap();

    let feed = watch(&conn(&n2, SUP_BILLING), "c0", 1);
    stream(
        &conn(&n1, AGENT_A17),
        call("hold_violation_call", "hv-1", "a17", "billing"),
    )
    .await;
    let events: Vec<_> = feed.await.unwrap().into_iter().map(|(e, _)| e).collect();
    let kinds: Vec<_> = events.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "call_started",
            "alert hold.permission",
            "alert hold.thank_on_return",
            "call_ended"
        ]
    );
    assert!(events.iter().all(|e| e.call_id == "hv-1"));
    assert!(events.windows(2).all(|w| cursor(&w[0]) < cursor(&w[1])));
    // The call ran on node 1; node 2 reads its record from the shared store.
    let mut sup = conn(&n2, SUP_BILLING).supervisor().await.unwrap();
    let record = sup
        .get_call(pb::GetCallRequest { call_id: "hv-1".into() })
        .await
        .expect("node 2 has node 1's call")
        .into_inner();
    let info = record.call.expect("the call's info");
    assert_eq!(info.state, pb::CallState::Ended as i32);
    assert_eq!(info.alerts, 2);
    assert_eq!(record.alerts.len(), 2);

    // Node 2 goes away; a second call goes on on node 1 meanwhile.
    n2.stop().await.unwrap();
    stream(&conn(&n1, AGENT_A17), call("abuse_call", "abuse-1", "a17", "billing")).await;
    // Node 2 back: a dashboard resuming after the first call's first alert
    // gets the rest of that call, then all of the second, once each.
    let n2 = Server::start(node(data2.path(), "n2", &nats, &db)).await.unwrap();
    let resumed = watch(&conn(&n2, SUP_BILLING), &events[1].cursor, 2);
    let resumed: Vec<_> = resumed.await.unwrap().into_iter().map(|(e, _)| e).collect();
    let kinds: Vec<_> = resumed.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "alert hold.thank_on_return",
            "call_ended",
            "call_started",
            "alert language.profanity_customer",
            "alert language.profanity_customer",
            "call_ended"
        ]
    );
    assert_eq!(resumed[0].cursor, events[2].cursor);
    assert!(resumed.windows(2).all(|w| cursor(&w[0]) < cursor(&w[1])));
    assert!(resumed[2..].iter().all(|e| e.call_id == "abuse-1"));
    n2.stop().await.unwrap();
    n1.stop().await.unwrap();
    drop(pg);
}
