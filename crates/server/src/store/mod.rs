//! The call store: calls, their final transcripts, and the alert feed's
//! durable log. [`CallStore`] is the seam; [`sqlite::Sqlite`] is today's
//! implementation (one file in the data directory), a shared database for
//! a cluster (PostgreSQL) is the next. Every implementation passes the
//! contract suite in `contract.rs` (tests only).
//!
//! Retried writes never duplicate a row: a call is begun once, a final is
//! kept once per utterance, and a feed event once per (call, kind, alert)
//! — see [`once_key`].

mod file;
pub mod postgres;
mod search;
pub mod seed;
pub mod sqlite;
pub mod watched;

#[cfg(test)]
pub(crate) mod contract;
#[cfg(test)]
mod search_contract;

use anyhow::Result;

use crate::cursor::{Cursor, FeedEntry};
use crate::filter::Meta;
use crate::pb;

/// Where calls and the feed are kept. Methods block (disk or network):
/// call them from blocking threads (`spawn_blocking`, session threads).
pub trait CallStore: Send + Sync {
    /// Records a new live call. True when recorded, now or by an earlier
    /// try of this same write (same agent, team and start); false when the
    /// id belongs to another call: call ids are never reused.
    fn begin_call(&self, call: &pb::CallInfo) -> Result<bool>;

    /// Records how a call ended (state, figures, reason) and its final
    /// scorecard. Idempotent: the last write wins.
    fn end_call(&self, call: &pb::CallInfo, scorecard: Option<&pb::Scorecard>) -> Result<()>;

    /// Keeps a final transcript revision. One row per (call, channel,
    /// utterance): a repeat replaces it.
    fn add_final(&self, revision: &pb::TranscriptRevision) -> Result<()>;

    /// Appends a feed event (its `call_id`, `agent_id` and `team` already
    /// set) and returns its cursor. Once per [`once_key`]: a repeat appends
    /// nothing and returns the first one's cursor, `fresh: false`.
    /// Appends are serialised by the caller (the feed), which publishes
    /// them in cursor order.
    fn append(&self, meta: &Meta, event: &pb::AlertEvent) -> Result<Appended>;

    /// Up to `limit` feed entries after `after`, oldest first, each with
    /// `event.cursor` set.
    fn feed_after(&self, after: Cursor, limit: usize) -> Result<Vec<FeedEntry>>;

    /// The newest entry's cursor (`Cursor(0)` for an empty feed).
    fn last(&self) -> Result<Cursor>;

    /// The cursor before the last `n` entries (`Cursor(0)` when there are
    /// no more than `n`).
    fn before_last(&self, n: u32) -> Result<Cursor>;

    /// The filter fields of an alert that may be claimed, or why it may
    /// not (no such alert; already acknowledged, and by whom).
    fn check_claim(&self, call_id: &str, alert_id: u64) -> Result<Result<Meta, AckError>>;

    /// A call and its scorecard as last recorded.
    fn call(&self, call_id: &str) -> Result<Option<(pb::CallInfo, Option<pb::Scorecard>)>>;

    /// Calls no longer live, of `team` (every team for `None`), the most
    /// recently started first.
    fn recent_calls(&self, team: Option<&str>, limit: u32) -> Result<Vec<pb::CallInfo>>;

    /// Ended calls matching `query`, the most recently started first
    /// (then by call id), `query.offset` rows skipped, at most
    /// `query.limit`. Text is matched against the stored finals, which are
    /// already redacted: a masked figure cannot be found.
    fn search_calls(&self, query: &SearchQuery) -> Result<Vec<pb::CallInfo>>;

    /// Everything stored about a call: its info and scorecard, the final
    /// transcript (by start time, then channel), its alerts, retractions
    /// and acknowledgements in feed order.
    fn record(&self, call_id: &str) -> Result<Option<pb::CallRecord>>;

    /// Appends an audit event (its `seq` is ignored) and returns its `seq`.
    /// Audit rows are never changed; only [`CallStore::purge_before`]
    /// removes them, by age.
    fn audit(&self, event: &pb::AuditEvent) -> Result<i64>;

    /// Audit events matching `query`, oldest first, each with its `seq`.
    fn audit_events(&self, query: &AuditQuery) -> Result<Vec<pb::AuditEvent>>;

    /// Deletes everything about calls that ended before `cutoff_unix_ms`
    /// (the call, its transcript, alerts, retractions, claims and
    /// scorecard) and audit events recorded before it, so that their text
    /// is gone from the store's files, not only from its indexes. Live
    /// calls stay, however old.
    fn purge_before(&self, cutoff_unix_ms: i64) -> Result<Purged>;
}

/// Which audit events to list (see [`CallStore::audit_events`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    /// Recorded at or after / at or before, in Unix ms.
    pub since_unix_ms: Option<i64>,
    pub until_unix_ms: Option<i64>,
    pub actor: Option<String>,
    pub call_id: Option<String>,
    /// Only events with a larger `seq` (0: from the start).
    pub after_seq: i64,
    pub limit: u32,
}

/// Which calls [`CallStore::search_calls`] returns: every condition given
/// must hold (`None`/empty: any).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    /// Words said, in this order (matched as whole words, any case).
    pub words: Option<String>,
    /// Said on this channel (`pb::Channel` as i32); `None`: by either party.
    pub channel: Option<i32>,
    /// An alert of this rule was raised on the call.
    pub rule_fired: Option<String>,
    pub team: Option<String>,
    pub agent_id: Option<String>,
    /// Started at or after / before, in Unix ms.
    pub from_unix_ms: Option<i64>,
    pub to_unix_ms: Option<i64>,
    /// Final score within, inclusive (a call with no score never matches).
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    /// Handle time (start to end) within, inclusive, in seconds.
    pub min_duration_s: Option<f64>,
    pub max_duration_s: Option<f64>,
    /// How the call ended (`pb::CallState` as i32); empty: any.
    pub states: Vec<i32>,
    pub offset: u32,
    pub limit: u32,
}

/// What [`CallStore::purge_before`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub calls: usize,
    pub audit_events: usize,
}

/// What [`CallStore::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub cursor: Cursor,
    /// False when the event was already in the feed (a retried append).
    pub fresh: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AckError {
    #[error("call {0} has no alert {1}")]
    NoSuchAlert(String, u64),
    #[error("alert {1} of call {0} was already claimed by {2}")]
    AlreadyClaimed(String, u64, String),
}

/// What makes a feed event unique: its call, its kind and the alert it is
/// about (none for call start and end). Each alert is raised once,
/// retracted at most once and claimed at most once; a call starts and
/// ends once.
pub fn once_key(event: &pb::AlertEvent) -> (&'static str, Option<u64>) {
    use pb::alert_event::Event;
    match &event.event {
        Some(Event::Alert(a)) => ("alert", Some(a.id)),
        Some(Event::Retraction(r)) => ("retraction", Some(r.alert_id)),
        Some(Event::Acknowledgement(a)) => ("ack", Some(a.alert_id)),
        Some(Event::CallStarted(_)) => ("call_started", None),
        Some(Event::CallEnded(_)) => ("call_ended", None),
        None => ("none", None),
    }
}
