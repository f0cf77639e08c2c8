//! The audit log: who read a call's transcript (`GetCall`, `WatchCall`),
//! claimed an alert, reloaded the rules, or was refused for a bad token —
//! when, from which peer. Rows go to the store ([`CallStore::audit`]);
//! `Admin.ListAuditEvents` reads them back.
//!
//! Two ways in, both off the async runtime's hot path:
//! - [`Audit::record`], from a blocking thread, for reads and actions: the
//!   row is written before the caller gets its answer, and an audit write
//!   that fails fails the request (no unaudited read). Never dropped.
//! - [`Audit::record_soon`] for refused tokens, whose interceptor runs on
//!   the runtime and must not block: a bounded queue ([`QUEUE`]) to one
//!   writer thread. A flood of bad tokens beyond it is dropped, counted
//!   (`callwatch_audit_dropped_total`) and logged, rather than stalling
//!   every request.

use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use anyhow::Result;

use crate::auth::Identity;
use crate::pb;
use crate::store::CallStore;
use callwatch_core::time::now_unix_ms;

/// Refused-token rows dropped because the queue was full.
pub const DROPPED_METRIC: &str = "callwatch_audit_dropped_total";

/// Refused-token rows waiting for the writer thread.
pub const QUEUE: usize = 1024;

/// What an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    GetCall,
    WatchCall,
    AcknowledgeAlert,
    ReloadRules,
    RefusedToken,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GetCall => "get_call",
            Self::WatchCall => "watch_call",
            Self::AcknowledgeAlert => "acknowledge_alert",
            Self::ReloadRules => "reload_rules",
            Self::RefusedToken => "refused_token",
        }
    }
}

/// An audit row, stamped now. `who` is `None` for a refused token: the
/// token itself is never recorded.
pub fn event(
    who: Option<&Identity>,
    action: Action,
    call_id: &str,
    peer: Option<SocketAddr>,
    detail: impl Into<String>,
) -> pb::AuditEvent {
    pb::AuditEvent {
        seq: 0,
        at_unix_ms: now_unix_ms(),
        actor: who.map(|w| w.name.clone()).unwrap_or_default(),
        role: who.map(|w| w.role.to_string()).unwrap_or_default(),
        action: action.as_str().to_owned(),
        call_id: call_id.to_owned(),
        peer: peer.map(|p| p.to_string()).unwrap_or_default(),
        detail: detail.into(),
    }
}

/// The audit log's writer. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn CallStore>,
    queue: SyncSender<pb::AuditEvent>,
}

impl Audit {
    /// Starts the writer thread; it ends when the last clone is dropped.
    pub fn start(store: Arc<dyn CallStore>) -> Result<Self> {
        let (queue, rows) = sync_channel::<pb::AuditEvent>(QUEUE);
        let writer = store.clone();
        std::thread::Builder::new()
            .name("callwatch-audit".into())
            .spawn(move || {
                for row in rows {
                    if let Err(e) = writer.audit(&row) {
                        tracing::error!(error = %format!("{e:#}"), action = %row.action, "an audit row could not be written");
                    }
                }
            })?;
        Ok(Self { store, queue })
    }

    /// Writes `event` now. Blocks (the store): call it from a blocking thread.
    pub fn record(&self, event: &pb::AuditEvent) -> Result<()> {
        self.store.audit(event).map(drop)
    }

    /// Queues `event` for the writer thread without blocking; see the
    /// module's note for when it is dropped.
    pub fn record_soon(&self, event: pb::AuditEvent) {
        match self.queue.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(row)) => {
                metrics::counter!(DROPPED_METRIC).increment(1);
                tracing::warn!(action = %row.action, peer = %row.peer, "audit queue full: a row was dropped");
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("the audit writer has stopped: a row was dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::Sqlite;
    use crate::store::AuditQuery;

    #[test]
    fn queued_rows_reach_the_store_and_never_name_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn CallStore> = Arc::new(Sqlite::open(dir.path()).unwrap());
        let audit = Audit::start(store.clone()).unwrap();
        let peer = "10.0.0.7:5555".parse().ok();
        audit.record_soon(event(None, Action::RefusedToken, "", peer, "unknown token"));
        let who = Identity {
            name: "Sam".into(),
            role: "supervisor:billing".parse().unwrap(),
            fast: false,
            token: crate::auth::sha256("Sam's token"),
        };
        audit
            .record(&event(Some(&who), Action::GetCall, "c1", peer, ""))
            .unwrap();
        let all = AuditQuery {
            limit: 10,
            ..Default::default()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let rows = loop {
            let rows = store.audit_events(&all).unwrap();
            if rows.len() == 2 || std::time::Instant::now() > deadline {
                break rows;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let mut seen: Vec<_> = rows
            .iter()
            .map(|r| (r.action.as_str(), r.actor.as_str(), r.role.as_str(), r.peer.as_str()))
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("get_call", "Sam", "supervisor:billing", "10.0.0.7:5555"),
                ("refused_token", "", "", "10.0.0.7:5555")
            ]
        );
    }
}
