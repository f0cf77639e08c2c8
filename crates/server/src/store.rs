//! The durable call store: SQLite (rusqlite, bundled), one file in the data
//! directory.
//!
//! Why SQLite: the feed is an append-only log read back by cursor and
//! filtered by team, agent, severity and rule — an indexed table with an
//! integer primary key is exactly that; WAL mode lets readers (dashboards
//! catching up) run beside the writer; and an operator can open the file
//! with the `sqlite3` shell. `synchronous = FULL`: an alert is on disk
//! before any dashboard sees it.
//!
//! Tables: `calls` (one row a call, its final scorecard once ended),
//! `transcript` (final revisions only) and `feed` (every alert, retraction,
//! acknowledgement and call start/end, as the encoded `AlertEvent` the
//! dashboards receive; its row id is the cursor).

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};

use crate::pb;

/// What the feed is filtered on, stored beside each event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub call_id: String,
    pub team: String,
    pub agent_id: String,
    /// For alert events (and retractions and acknowledgements of them).
    pub severity: Option<i32>,
    pub rule_id: Option<String>,
}

/// One recorded feed event; `event.cursor` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEntry {
    pub seq: i64,
    pub meta: Meta,
    pub event: pb::AlertEvent,
}

pub struct Store {
    conn: Mutex<Connection>,
}

#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("call {0} has no alert {1}")]
    NoSuchAlert(String, u64),
    #[error("alert {1} of call {0} was already claimed by {2}")]
    AlreadyClaimed(String, u64, String),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    team TEXT NOT NULL,
    state INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER NOT NULL DEFAULT 0,
    audio_s REAL NOT NULL DEFAULT 0,
    alerts INTEGER NOT NULL DEFAULT 0,
    score REAL,
    reason TEXT NOT NULL DEFAULT '',
    scorecard BLOB
);
CREATE TABLE IF NOT EXISTS transcript (
    call_id TEXT NOT NULL,
    channel INTEGER NOT NULL,
    utterance_id INTEGER NOT NULL,
    start_s REAL NOT NULL,
    end_s REAL NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (call_id, channel, utterance_id)
);
CREATE TABLE IF NOT EXISTS feed (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    team TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    severity INTEGER,
    rule_id TEXT,
    kind TEXT NOT NULL,
    alert_id INTEGER,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS feed_call ON feed (call_id, kind, alert_id);
";

impl Store {
    /// Opens (or creates) the store in `dir`. Calls a previous run left
    /// live — it stopped without finishing them — are marked aborted.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the data directory", dir.display()))?;
        let path = dir.join("callwatch.sqlite3");
        let conn = Connection::open(&path).with_context(|| format!("{}: cannot open the store", path.display()))?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
            .and_then(|_| conn.execute_batch(SCHEMA))
            .with_context(|| format!("{}: not a callwatch store", path.display()))?;
        let orphans = conn.execute(
            "UPDATE calls SET state = ?1, reason = 'the server stopped during the call' WHERE state = ?2",
            params![pb::CallState::Aborted as i32, pb::CallState::Live as i32],
        )?;
        if orphans > 0 {
            tracing::warn!(orphans, "calls left live by the previous run marked aborted");
        }
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("store lock poisoned")
    }

    /// Records a new call; false if its id is already taken.
    pub fn begin_call(&self, call: &pb::CallInfo) -> Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO calls (call_id, agent_id, team, state, started_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![call.call_id, call.agent_id, call.team, call.state, call.started_unix_ms],
        )?;
        Ok(n == 1)
    }

    pub fn end_call(&self, call: &pb::CallInfo, scorecard: Option<&pb::Scorecard>) -> Result<()> {
        self.conn().execute(
            "UPDATE calls SET state = ?2, ended_ms = ?3, audio_s = ?4, alerts = ?5, score = ?6, reason = ?7, scorecard = ?8
             WHERE call_id = ?1",
            params![
                call.call_id,
                call.state,
                call.ended_unix_ms,
                call.audio_s,
                call.alerts,
                call.score,
                call.reason,
                scorecard.map(|s| s.encode_to_vec())
            ],
        )?;
        Ok(())
    }

    pub fn add_final(&self, t: &pb::TranscriptRevision) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO transcript VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![t.call_id, t.channel, t.utterance_id as i64, t.start_s, t.end_s, t.text],
        )?;
        Ok(())
    }

    /// Appends an event to the feed and returns its sequence number. The
    /// caller ([`crate::hub::Feed`]) serialises appends with publishing.
    pub fn append(&self, meta: &Meta, event: &pb::AlertEvent) -> Result<i64> {
        use pb::alert_event::Event;
        let (kind, alert_id) = match &event.event {
            Some(Event::Alert(a)) => ("alert", Some(a.id)),
            Some(Event::Retraction(r)) => ("retraction", Some(r.alert_id)),
            Some(Event::Acknowledgement(a)) => ("ack", Some(a.alert_id)),
            Some(Event::CallStarted(_)) => ("call_started", None),
            Some(Event::CallEnded(_)) => ("call_ended", None),
            None => ("none", None),
        };
        let conn = self.conn();
        conn.execute(
            "INSERT INTO feed (call_id, team, agent_id, severity, rule_id, kind, alert_id, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                meta.call_id,
                meta.team,
                meta.agent_id,
                meta.severity,
                meta.rule_id,
                kind,
                alert_id.map(|i| i as i64),
                event.encode_to_vec()
            ],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Up to `limit` feed entries after sequence number `after`, oldest first.
    pub fn feed_after(&self, after: i64, limit: usize) -> Result<Vec<FeedEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, call_id, team, agent_id, severity, rule_id, body FROM feed WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                Meta {
                    call_id: r.get(1)?,
                    team: r.get(2)?,
                    agent_id: r.get(3)?,
                    severity: r.get(4)?,
                    rule_id: r.get(5)?,
                },
                r.get::<_, Vec<u8>>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (seq, meta, body) = row?;
            let mut event = pb::AlertEvent::decode(body.as_slice()).context("a corrupt feed row in the store")?;
            event.cursor = crate::hub::Cursor(seq).to_string();
            Ok(FeedEntry { seq, meta, event })
        })
        .collect()
    }

    /// The newest sequence number (0 for an empty feed).
    pub fn last_seq(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM feed", [], |r| r.get(0))?)
    }

    /// The sequence number before the last `n` feed entries.
    pub fn seq_before_last(&self, n: u32) -> Result<i64> {
        Ok(self.conn().query_row(
            "SELECT COALESCE((SELECT seq FROM feed ORDER BY seq DESC LIMIT 1 OFFSET ?1), 0)",
            params![n],
            |r| r.get(0),
        )?)
    }

    /// The team and agent of an alert that may be claimed, or why not.
    pub fn check_claim(&self, call_id: &str, alert_id: u64) -> Result<Result<Meta, AckError>> {
        let conn = self.conn();
        let owner = conn
            .query_row(
                "SELECT team, agent_id, severity, rule_id FROM feed WHERE call_id = ?1 AND kind = 'alert' AND alert_id = ?2",
                params![call_id, alert_id as i64],
                |r| {
                    Ok(Meta {
                        call_id: call_id.to_owned(),
                        team: r.get(0)?,
                        agent_id: r.get(1)?,
                        severity: r.get(2)?,
                        rule_id: r.get(3)?,
                    })
                },
            )
            .optional()?;
        let Some(meta) = owner else {
            return Ok(Err(AckError::NoSuchAlert(call_id.to_owned(), alert_id)));
        };
        let claimed: Option<Vec<u8>> = conn
            .query_row(
                "SELECT body FROM feed WHERE call_id = ?1 AND kind = 'ack' AND alert_id = ?2",
                params![call_id, alert_id as i64],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(body) = claimed {
            let by = match pb::AlertEvent::decode(body.as_slice())?.event {
                Some(pb::alert_event::Event::Acknowledgement(a)) => a.by,
                _ => String::from("someone"),
            };
            return Ok(Err(AckError::AlreadyClaimed(call_id.to_owned(), alert_id, by)));
        }
        Ok(Ok(meta))
    }

    pub fn call(&self, call_id: &str) -> Result<Option<(pb::CallInfo, Option<pb::Scorecard>)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{CALL_COLUMNS} WHERE call_id = ?1"))?;
        let row = stmt.query_row(params![call_id], call_row).optional()?;
        row.map(decode_call).transpose()
    }

    /// Ended calls of `team` (all teams for `None`), newest first.
    pub fn recent_calls(&self, team: Option<&str>, limit: u32) -> Result<Vec<pb::CallInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{CALL_COLUMNS} WHERE state != ?1 AND (?2 IS NULL OR team = ?2) ORDER BY started_ms DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![pb::CallState::Live as i32, team, limit], call_row)?;
        rows.map(|r| Ok(decode_call(r?)?.0)).collect()
    }

    /// Everything stored about a call: final transcript and its feed events.
    pub fn record(&self, call_id: &str) -> Result<Option<pb::CallRecord>> {
        let Some((call, scorecard)) = self.call(call_id)? else {
            return Ok(None);
        };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT channel, utterance_id, start_s, end_s, text FROM transcript WHERE call_id = ?1 ORDER BY start_s, channel",
        )?;
        let transcript = stmt
            .query_map(params![call_id], |r| {
                Ok(pb::TranscriptRevision {
                    call_id: call_id.to_owned(),
                    channel: r.get(0)?,
                    utterance_id: r.get::<_, i64>(1)? as u64,
                    revision: 0,
                    is_final: true,
                    start_s: r.get(2)?,
                    end_s: r.get(3)?,
                    text: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut record = pb::CallRecord {
            call: Some(call),
            transcript,
            scorecard,
            ..Default::default()
        };
        let mut stmt = conn.prepare_cached("SELECT body FROM feed WHERE call_id = ?1 ORDER BY seq")?;
        for body in stmt.query_map(params![call_id], |r| r.get::<_, Vec<u8>>(0))? {
            use pb::alert_event::Event;
            match pb::AlertEvent::decode(body?.as_slice())?.event {
                Some(Event::Alert(a)) => record.alerts.push(a),
                Some(Event::Retraction(r)) => record.retractions.push(r),
                Some(Event::Acknowledgement(a)) => record.acknowledgements.push(a),
                _ => {}
            }
        }
        Ok(Some(record))
    }
}

const CALL_COLUMNS: &str =
    "SELECT call_id, agent_id, team, state, started_ms, ended_ms, audio_s, alerts, score, reason, scorecard FROM calls";

type CallRow = (pb::CallInfo, Option<Vec<u8>>);

fn call_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallRow> {
    Ok((
        pb::CallInfo {
            call_id: r.get(0)?,
            agent_id: r.get(1)?,
            team: r.get(2)?,
            state: r.get(3)?,
            started_unix_ms: r.get(4)?,
            ended_unix_ms: r.get(5)?,
            audio_s: r.get(6)?,
            alerts: r.get(7)?,
            score: r.get(8)?,
            reason: r.get(9)?,
            ..Default::default()
        },
        r.get(10)?,
    ))
}

fn decode_call((info, card): CallRow) -> Result<(pb::CallInfo, Option<pb::Scorecard>)> {
    let card = card
        .map(|b| pb::Scorecard::decode(b.as_slice()))
        .transpose()
        .context("a corrupt scorecard in the store")?;
    Ok((info, card))
}
