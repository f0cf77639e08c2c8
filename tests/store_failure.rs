//! A store that cannot be written is loud, against a real server with the
//! real model and clients: the SQLite store behind a fault injector (the
//! `CallStore` seam) fails its writes as a full disk does; the live call
//! ends with UNAVAILABLE at once, health turns NOT_SERVING, an admin's feed
//! gets `service.store_failed`, and once writes succeed again new calls
//! work, health is SERVING and the cut call is stored as ABORTED.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use callwatch_client::{self as client, Connection, SoftphoneCall};
use callwatch_core::audio::{Channel, Recording};
use callwatch_proto::pb::{self, alert_event::Event};
use callwatch_server::cursor::{Cursor, FeedEntry};
use callwatch_server::filter::Meta;
use callwatch_server::server::Server;
use callwatch_server::store::sqlite::Sqlite;
use callwatch_server::store::{AckError, Appended, AuditQuery, CallStore, Purged, SearchQuery};
use callwatch_server::transcript_filter::Verbatim;
use common::service::*;
use tonic_health::pb::health_check_response::ServingStatus;

/// SQLite whose writes fail while `full` is set, as on a full disk.
struct FullDisk {
    inner: Sqlite,
    full: Arc<AtomicBool>,
}

impl FullDisk {
    fn check(&self) -> Result<()> {
        if self.full.load(Ordering::SeqCst) {
            bail!("database or disk is full (injected)");
        }
        Ok(())
    }
}

impl CallStore for FullDisk {
    fn begin_call(&self, call: &pb::CallInfo) -> Result<bool> {
        self.check()?;
        self.inner.begin_call(call)
    }
    fn end_call(&self, call: &pb::CallInfo, scorecard: Option<&pb::Scorecard>) -> Result<()> {
        self.check()?;
        self.inner.end_call(call, scorecard)
    }
    fn add_final(&self, revision: &pb::TranscriptRevision) -> Result<()> {
        self.check()?;
        self.inner.add_final(revision)
    }
    fn append(&self, meta: &Meta, event: &pb::AlertEvent) -> Result<Appended> {
        self.check()?;
        self.inner.append(meta, event)
    }
    fn feed_after(&self, after: Cursor, limit: usize) -> Result<Vec<FeedEntry>> {
        self.inner.feed_after(after, limit)
    }
    fn last(&self) -> Result<Cursor> {
        self.inner.last()
    }
    fn before_last(&self, n: u32) -> Result<Cursor> {
        self.inner.before_last(n)
    }
    fn check_claim(&self, call_id: &str, alert_id: u64) -> Result<Result<Meta, AckError>> {
        self.inner.check_claim(call_id, alert_id)
    }
    fn call(&self, call_id: &str) -> Result<Option<(pb::CallInfo, Option<pb::Scorecard>)>> {
        self.inner.call(call_id)
    }
    fn recent_calls(&self, team: Option<&str>, limit: u32) -> Result<Vec<pb::CallInfo>> {
        self.inner.recent_calls(team, limit)
    }

    fn search_calls(&self, query: &SearchQuery) -> Result<Vec<pb::CallInfo>> {
        self.inner.search_calls(query)
    }
    fn record(&self, call_id: &str) -> Result<Option<pb::CallRecord>> {
        self.inner.record(call_id)
    }

    fn audit(&self, event: &pb::AuditEvent) -> Result<i64> {
        self.check()?;
        self.inner.audit(event)
    }

    fn audit_events(&self, query: &AuditQuery) -> Result<Vec<pb::AuditEvent>> {
        self.inner.audit_events(query)
    }

    fn purge_before(&self, cutoff_unix_ms: i64) -> Result<Purged> {
        self.check()?;
        self.inner.purge_before(cutoff_unix_ms)
    }
}

/// `seconds` of silence on both parties, in real time.
fn silent_call(call_id: &str, seconds: usize, fast: bool) -> SoftphoneCall {
    let silence = vec![0.0; 8_000 * seconds];
    SoftphoneCall {
        call_id: call_id.into(),
        agent_id: "a17".into(),
        team: "billing".into(),
        recording: Recording {
            sample_rate: 8_000,
            channels: vec![(Channel::Agent, silence.clone()), (Channel::Customer, silence)],
            repairs: Default::default(),
        },
        controls: Vec::new(),
        fast,
        drop_at_end: false,
    }
}

async fn health(c: &Connection) -> ServingStatus {
    let (channel, _) = c.channel().await.unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "callwatch.v1.CallIngest".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

async fn until_health(c: &Connection, want: ServingStatus) -> Duration {
    let since = Instant::now();
    while health(c).await != want {
        assert!(since.elapsed() < Duration::from_secs(5), "health is not {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_written_ends_calls_flips_health_and_tells_admins() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let full = Arc::new(AtomicBool::new(false));
    let store = FullDisk {
        inner: Sqlite::open(dir.path()).unwrap(),
        full: full.clone(),
    };
    let server = Server::start_with_store(cfg, Arc::new(Verbatim), Arc::new(store))
        .await
        .unwrap();
    let (agent, admin) = (conn(&server, AGENT_A17), conn(&server, ADMIN));
    assert_eq!(health(&agent).await, ServingStatus::Serving);

    // An admin follows the feed; a call is live.
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let watcher = {
        let admin = admin.clone();
        tokio::spawn(async move {
            let _ = client::watch(&admin, client::WatchFilter::default(), String::new(), None, |e| {
                let _ = events_tx.send(e.clone());
            })
            .await;
        })
    };
    let live = {
        let agent = agent.clone();
        tokio::spawn(async move { client::softphone(&agent, silent_call("cut-1", 30, false), |_| {}).await })
    };
    let since = Instant::now();
    while !matches!(events.recv().await.and_then(|e| e.event), Some(Event::CallStarted(_))) {
        assert!(since.elapsed() < Duration::from_secs(10));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The disk fills: the next write (a new call) fails.
    full.store(true, Ordering::SeqCst);
    let failed_at = Instant::now();
    let refused = client::softphone(&agent, silent_call("refused-1", 1, true), |_| {})
        .await
        .unwrap_err();
    assert!(format!("{refused:#}").contains("Unavailable"), "{refused:#}");
    let ended = live.await.unwrap().unwrap_err();
    let cut_after = failed_at.elapsed();
    assert!(format!("{ended:#}").contains("Unavailable"), "{ended:#}");
    assert!(format!("{ended:#}").contains("call store"), "{ended:#}");
    assert!(
        cut_after < Duration::from_secs(2),
        "the live call ended {cut_after:?} after the failure"
    );
    until_health(&agent, ServingStatus::NotServing).await;
    let alarm = loop {
        match events.recv().await.and_then(|e| e.event) {
            Some(Event::Alert(a)) if a.rule_id == "service.store_failed" => break a,
            Some(_) => {}
            None => panic!("the feed ended without service.store_failed"),
        }
    };
    assert_eq!(alarm.severity, pb::Severity::Critical as i32);
    // No call is shown as live.
    let mut sup = conn(&server, SUP_ALL).supervisor().await.unwrap();
    let wall = sup
        .list_calls(pb::ListCallsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        wall.calls.iter().all(|c| c.state != pb::CallState::Live as i32),
        "{:?}",
        wall.calls
    );
    println!("live call ended {cut_after:?} after the store failed");

    // Space is freed: a new call works, health comes back, the cut call is
    // stored as aborted.
    full.store(false, Ordering::SeqCst);
    let (_, ended) = stream(&agent, silent_call("after-1", 1, true)).await;
    assert!(ended.is_some());
    until_health(&agent, ServingStatus::Serving).await;
    let cut = sup
        .get_call(pb::GetCallRequest {
            call_id: "cut-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    assert_eq!(cut.state, pb::CallState::Aborted as i32, "{cut:?}");
    assert!(cut.reason.contains("call store"), "{}", cut.reason);
    watcher.abort();
    server.stop().await.unwrap();
}
