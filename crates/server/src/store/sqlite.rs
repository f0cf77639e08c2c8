//! [`CallStore`] on SQLite (rusqlite, bundled): one file in the data
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
//! dashboards receive; its row id is the cursor). Unique keys make retried
//! writes harmless: `calls.call_id`, `transcript (call_id, channel,
//! utterance_id)` and `feed_once` (see [`super::once_key`]).

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};

use super::{once_key, AckError, Appended, CallStore};
use crate::cursor::{Cursor, FeedEntry};
use crate::filter::Meta;
use crate::pb;

/// The store in one SQLite file. Every method takes the one connection in
/// turn: writes are a few rows each, and WAL keeps the file readable by
/// other processes meanwhile.
pub struct Sqlite {
    conn: Mutex<Connection>,
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
CREATE UNIQUE INDEX IF NOT EXISTS feed_once ON feed (call_id, kind, COALESCE(alert_id, -1));
";

impl Sqlite {
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
}

impl CallStore for Sqlite {
    fn begin_call(&self, call: &pb::CallInfo) -> Result<bool> {
        let conn = self.conn();
        let n = conn.execute(
            "INSERT OR IGNORE INTO calls (call_id, agent_id, team, state, started_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![call.call_id, call.agent_id, call.team, call.state, call.started_unix_ms],
        )?;
        if n == 1 {
            return Ok(true);
        }
        let same: bool = conn.query_row(
            "SELECT agent_id = ?2 AND team = ?3 AND started_ms = ?4 FROM calls WHERE call_id = ?1",
            params![call.call_id, call.agent_id, call.team, call.started_unix_ms],
            |r| r.get(0),
        )?;
        Ok(same)
    }

    fn end_call(&self, call: &pb::CallInfo, scorecard: Option<&pb::Scorecard>) -> Result<()> {
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

    fn add_final(&self, t: &pb::TranscriptRevision) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO transcript VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![t.call_id, t.channel, t.utterance_id as i64, t.start_s, t.end_s, t.text],
        )?;
        Ok(())
    }

    fn append(&self, meta: &Meta, event: &pb::AlertEvent) -> Result<Appended> {
        let (kind, alert_id) = once_key(event);
        let alert_id = alert_id.map(|i| i as i64);
        let conn = self.conn();
        let n = conn.execute(
            "INSERT INTO feed (call_id, team, agent_id, severity, rule_id, kind, alert_id, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
            params![
                meta.call_id,
                meta.team,
                meta.agent_id,
                meta.severity,
                meta.rule_id,
                kind,
                alert_id,
                event.encode_to_vec()
            ],
        )?;
        if n == 1 {
            return Ok(Appended {
                cursor: Cursor(conn.last_insert_rowid()),
                fresh: true,
            });
        }
        let seq = conn.query_row(
            "SELECT seq FROM feed WHERE call_id = ?1 AND kind = ?2 AND COALESCE(alert_id, -1) = COALESCE(?3, -1)",
            params![meta.call_id, kind, alert_id],
            |r| r.get(0),
        )?;
        Ok(Appended {
            cursor: Cursor(seq),
            fresh: false,
        })
    }

    fn feed_after(&self, after: Cursor, limit: usize) -> Result<Vec<FeedEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, call_id, team, agent_id, severity, rule_id, body FROM feed WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after.0, limit as i64], |r| {
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
            let cursor = Cursor(seq);
            event.cursor = cursor.to_string();
            Ok(FeedEntry { cursor, meta, event })
        })
        .collect()
    }

    fn last(&self) -> Result<Cursor> {
        let seq = self
            .conn()
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM feed", [], |r| r.get(0))?;
        Ok(Cursor(seq))
    }

    fn before_last(&self, n: u32) -> Result<Cursor> {
        let seq = self.conn().query_row(
            "SELECT COALESCE((SELECT seq FROM feed ORDER BY seq DESC LIMIT 1 OFFSET ?1), 0)",
            params![n],
            |r| r.get(0),
        )?;
        Ok(Cursor(seq))
    }

    fn check_claim(&self, call_id: &str, alert_id: u64) -> Result<Result<Meta, AckError>> {
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

    fn call(&self, call_id: &str) -> Result<Option<(pb::CallInfo, Option<pb::Scorecard>)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{CALL_COLUMNS} WHERE call_id = ?1"))?;
        let row = stmt.query_row(params![call_id], call_row).optional()?;
        row.map(decode_call).transpose()
    }

    fn recent_calls(&self, team: Option<&str>, limit: u32) -> Result<Vec<pb::CallInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{CALL_COLUMNS} WHERE state != ?1 AND (?2 IS NULL OR team = ?2) ORDER BY started_ms DESC LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![pb::CallState::Live as i32, team, limit], call_row)?;
        rows.map(|r| Ok(decode_call(r?)?.0)).collect()
    }

    fn record(&self, call_id: &str) -> Result<Option<pb::CallRecord>> {
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
                    // The text keeps its markers; their places are not stored.
                    redacted: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (Sqlite, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Sqlite::open(dir.path()).unwrap(), dir)
    }

    crate::store::contract::call_store_contract!(fresh);

    #[test]
    fn calls_left_live_by_a_previous_run_are_aborted_on_open() {
        let (store, dir) = fresh();
        let info = pb::CallInfo {
            call_id: "c1".into(),
            state: pb::CallState::Live as i32,
            ..Default::default()
        };
        store.begin_call(&info).unwrap();
        drop(store);
        let reopened = Sqlite::open(dir.path()).unwrap();
        let (info, _) = reopened.call("c1").unwrap().unwrap();
        assert_eq!(info.state, pb::CallState::Aborted as i32);
        assert_eq!(info.reason, "the server stopped during the call");
    }
}
