use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};

use super::*;
use crate::testkit::PgServer;

/// One server for the module's tests; each test gets its own database.
fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| PgServer::start().expect("a test PostgreSQL"))
}

fn fresh_url() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let db = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
    server().database(&db).unwrap()
}

pub(crate) fn fresh() -> (Postgres, ()) {
    (Postgres::connect(&fresh_url()).unwrap(), ())
}

crate::store::contract::call_store_contract!(fresh);

#[test]
fn migrations_apply_once_however_many_nodes_start() {
    let url = fresh_url();
    let nodes: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Postgres::connect(&url).map(|_| ()))
        })
        .collect();
    for node in nodes {
        node.join().unwrap().unwrap();
    }
    let mut client = postgres::Client::connect(&url, NoTls).unwrap();
    let versions: i64 = client
        .query_one("SELECT COUNT(*) FROM callwatch_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(versions, schema::MIGRATIONS.len() as i64, "each version recorded once");
}

fn alert_meta() -> Meta {
    Meta {
        call_id: "c1".into(),
        team: "billing".into(),
        agent_id: "a1".into(),
        severity: Some(2),
        rule_id: Some("disclosure".into()),
    }
}

/// Two nodes (two store handles on one database) claim the same alert at
/// the same moment, many times over: each time exactly one claim is
/// fresh, and afterwards both nodes name the winner.
#[test]
fn two_nodes_racing_a_claim_one_wins() {
    let url = fresh_url();
    let nodes = [
        Arc::new(Postgres::connect(&url).unwrap()),
        Arc::new(Postgres::connect(&url).unwrap()),
    ];
    for alert_id in 1..=20u64 {
        let raised = pb::AlertEvent {
            event: Some(pb::alert_event::Event::Alert(pb::Alert {
                id: alert_id,
                call_id: "c1".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        nodes[0].append(&alert_meta(), &raised).unwrap();
        let start = Arc::new(Barrier::new(2));
        let claims: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let (node, start) = (node.clone(), start.clone());
                std::thread::spawn(move || {
                    let by = format!("sup{i}");
                    start.wait();
                    // The loser is refused at the check (the winner's claim
                    // is already committed) or its append is not fresh.
                    let meta = match node.check_claim("c1", alert_id).unwrap() {
                        Ok(meta) => meta,
                        Err(AckError::AlreadyClaimed(..)) => return (by, false),
                        Err(e) => panic!("{e}"),
                    };
                    let ack = pb::AlertEvent {
                        event: Some(pb::alert_event::Event::Acknowledgement(pb::Acknowledgement {
                            call_id: "c1".into(),
                            alert_id,
                            by: by.clone(),
                            ..Default::default()
                        })),
                        ..Default::default()
                    };
                    (by, node.append(&meta, &ack).unwrap().fresh)
                })
            })
            .collect();
        let results: Vec<_> = claims.into_iter().map(|c| c.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(_, won)| *won).collect();
        assert_eq!(winners.len(), 1, "alert {alert_id}: {results:?}");
        let winner = winners[0].0.clone();
        for node in &nodes {
            assert_eq!(
                node.check_claim("c1", alert_id).unwrap(),
                Err(AckError::AlreadyClaimed("c1".into(), alert_id, winner.clone()))
            );
        }
    }
}

#[test]
fn the_audit_log_refuses_updates() {
    let url = fresh_url();
    let store = Postgres::connect(&url).unwrap();
    store.audit(&pb::AuditEvent::default()).unwrap();
    let mut client = postgres::Client::connect(&url, NoTls).unwrap();
    let err = client
        .execute("UPDATE audit SET actor = 'someone else'", &[])
        .unwrap_err();
    assert!(format!("{err:?}").contains("append-only"), "{err:?}");
}

/// A restart of PostgreSQL fails the writes while it is down and the
/// store reconnects by itself once it is back; nothing committed is lost.
#[test]
fn the_store_reconnects_after_a_database_restart() {
    let mut own = PgServer::start().unwrap();
    let store = Postgres::connect(&own.database("restart").unwrap()).unwrap();
    let event = |id| pb::AlertEvent {
        event: Some(pb::alert_event::Event::Alert(pb::Alert {
            id,
            call_id: "c1".into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    store.append(&alert_meta(), &event(1)).unwrap();
    own.stop().unwrap();
    assert!(
        store.append(&alert_meta(), &event(2)).is_err(),
        "a write with the database down fails"
    );
    own.start_again().unwrap();
    store.append(&alert_meta(), &event(2)).unwrap();
    let ids: Vec<_> = store
        .feed_after(Cursor(0), 10)
        .unwrap()
        .into_iter()
        .map(|e| match e.event.event {
            Some(pb::alert_event::Event::Alert(a)) => a.id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn a_password_in_the_url_is_hidden_in_errors() {
    assert_eq!(
        redacted("postgres://cw:s3cret@db:5432/cw"),
        "postgres://cw:***@db:5432/cw"
    );
    assert_eq!(redacted("postgres://cw@db/cw"), "postgres://cw@db/cw");
    let err = Postgres::connect("postgres://cw:s3cret@127.0.0.1:1/cw").err().unwrap();
    assert!(!format!("{err:#}").contains("s3cret"), "{err:#}");
}
