//! A store that cannot be written is an alarm, not silence. [`Watched`]
//! wraps the real [`CallStore`] and watches every write:
//!
//! - the first write that fails (disk full, I/O error) turns the store
//!   *failing*: logged once, [`Watched::healthy`] turns false (the server
//!   reports NOT_SERVING), and a `service.store_failed` alert goes live to
//!   every watcher of all teams (it cannot be stored: it is sent, not
//!   recorded, and carries no cursor);
//! - while failing, live calls end with UNAVAILABLE (their sessions check
//!   [`Watched::failing`] on every tick) and their end is kept here;
//! - the first write that succeeds again (a new call being recorded) turns
//!   it healthy, and the ends kept meanwhile are written (as ABORTED), so
//!   no call stays LIVE in the store.
//!
//! Reads pass through unwatched: a failing read fails only its request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::sync::{broadcast, watch};

use super::{AckError, Appended, AuditQuery, CallStore, Purged};
use crate::cursor::{Cursor, FeedEntry};
use crate::filter::Meta;
use crate::pb;
use callwatch_core::time::now_unix_ms;

/// The rule id of the alert raised when the store fails.
pub const STORE_FAILED: &str = "service.store_failed";
/// Service alerts a slow watcher may miss (they are also logged).
const SERVICE_QUEUE: usize = 16;

pub struct Watched {
    inner: Arc<dyn CallStore>,
    failing: AtomicBool,
    healthy: watch::Sender<bool>,
    service: broadcast::Sender<pb::AlertEvent>,
    /// Calls ended while the store failed, to record when it works again.
    unrecorded: Mutex<Vec<pb::CallInfo>>,
}

impl Watched {
    pub fn new(inner: Arc<dyn CallStore>) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
            healthy: watch::channel(true).0,
            service: broadcast::channel(SERVICE_QUEUE).0,
            unrecorded: Mutex::default(),
        }
    }

    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// True while writes succeed.
    pub fn healthy(&self) -> watch::Receiver<bool> {
        self.healthy.subscribe()
    }

    /// Service alerts (`service.store_failed`), live only.
    pub fn service_alerts(&self) -> broadcast::Receiver<pb::AlertEvent> {
        self.service.subscribe()
    }

    /// Records `info`'s end once the store works again (the call ended
    /// while it failed).
    pub fn end_when_healthy(&self, info: pb::CallInfo) {
        self.unrecorded.lock().expect("poisoned").push(info);
    }

    fn watch<T>(&self, what: &str, result: Result<T>) -> Result<T> {
        match &result {
            Ok(_) if self.failing() => self.recovered(),
            Ok(_) => {}
            Err(e) => {
                if !self.failing.swap(true, Ordering::SeqCst) {
                    self.failed(what, e);
                }
            }
        }
        result
    }

    fn failed(&self, what: &str, e: &anyhow::Error) {
        tracing::error!(
            "the call store failed ({what}): {e:#}; live calls are ended and new ones refused until a write succeeds"
        );
        self.healthy.send_replace(false);
        metrics::counter!("callwatch_store_failures_total").increment(1);
        let alert = pb::Alert {
            rule_id: STORE_FAILED.into(),
            severity: pb::Severity::Critical.into(),
            for_supervisor: true,
            message: format!("The call store cannot be written ({what}: {e:#}). Live calls were ended; calls are refused until it works again."),
            ..Default::default()
        };
        // Nobody watching is fine: it is logged.
        let _ = self.service.send(pb::AlertEvent {
            at_unix_ms: now_unix_ms(),
            event: Some(pb::alert_event::Event::Alert(alert)),
            ..Default::default()
        });
    }

    fn recovered(&self) {
        let ends = std::mem::take(&mut *self.unrecorded.lock().expect("poisoned"));
        for (n, info) in ends.iter().enumerate() {
            if let Err(e) = self.inner.end_call(info, None) {
                // Still failing after all: keep what is left for next time.
                self.unrecorded.lock().expect("poisoned").extend_from_slice(&ends[n..]);
                tracing::error!("the call store failed again (end_call): {e:#}");
                return;
            }
        }
        if self.failing.swap(false, Ordering::SeqCst) {
            tracing::warn!(calls_recorded = ends.len(), "the call store works again");
            self.healthy.send_replace(true);
        }
    }
}

impl CallStore for Watched {
    fn begin_call(&self, call: &pb::CallInfo) -> Result<bool> {
        self.watch("begin_call", self.inner.begin_call(call))
    }

    fn end_call(&self, call: &pb::CallInfo, scorecard: Option<&pb::Scorecard>) -> Result<()> {
        self.watch("end_call", self.inner.end_call(call, scorecard))
    }

    fn add_final(&self, revision: &pb::TranscriptRevision) -> Result<()> {
        self.watch("add_final", self.inner.add_final(revision))
    }

    fn append(&self, meta: &Meta, event: &pb::AlertEvent) -> Result<Appended> {
        self.watch("append", self.inner.append(meta, event))
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

    fn search_calls(&self, query: &super::SearchQuery) -> Result<Vec<pb::CallInfo>> {
        self.inner.search_calls(query)
    }

    fn record(&self, call_id: &str) -> Result<Option<pb::CallRecord>> {
        self.inner.record(call_id)
    }

    fn audit(&self, event: &pb::AuditEvent) -> Result<i64> {
        self.watch("audit", self.inner.audit(event))
    }

    fn audit_events(&self, query: &AuditQuery) -> Result<Vec<pb::AuditEvent>> {
        self.inner.audit_events(query)
    }

    fn purge_before(&self, cutoff_unix_ms: i64) -> Result<Purged> {
        self.watch("purge_before", self.inner.purge_before(cutoff_unix_ms))
    }
}
