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
//! utterance_id)` and `feed_once` (see [`super::once_key`]). `audit` is
//! the append-only audit log (a trigger refuses updates).
//!
//! Privacy: the file is private to its owner and, with a key,
//! SQLCipher-encrypted (pages and WAL; see `file.rs`); `secure_delete`
//! overwrites deleted rows, and a purge checkpoints and truncates the WAL,
//! so purged text is gone from the files, not only from the indexes.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension};

use super::{file, once_key, search, AckError, Appended, AuditQuery, CallStore, Purged, SearchQuery};
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
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    call_id TEXT NOT NULL,
    peer TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at_ms);
CREATE TRIGGER IF NOT EXISTS audit_append_only BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
";

/// Calls a purge removes: ended (not live) before the cutoff `?1`.
const PURGEABLE: &str = "SELECT call_id FROM calls WHERE state != ?2 AND MAX(started_ms, ended_ms) < ?1";

impl Sqlite {
    /// Opens (or creates) the unencrypted store in `dir`. Calls a previous
    /// run left live — it stopped without finishing them — are marked
    /// aborted.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_keyed(dir, None)
    }

    /// [`Sqlite::open`], encrypted with `key` (a passphrase) when given. A
    /// wrong key, a key for a plain store or none for an encrypted one is
    /// refused before anything is written.
    pub fn open_keyed(dir: &Path, key: Option<&str>) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the data directory", dir.display()))?;
        let path = dir.join("callwatch.sqlite3");
        let conn = file::open(&path, key)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; PRAGMA secure_delete = ON;",
        )
        .and_then(|_| conn.execute_batch(SCHEMA))
        .and_then(|_| search::create(&conn))
        .with_context(|| format!("{}: not a callwatch store", path.display()))?;
        let store = Self { conn: Mutex::new(conn) };
        let orphans = store.close_orphans()?;
        if orphans > 0 {
            tracing::warn!(orphans, "calls left live by the previous run marked aborted");
        }
        Ok(store)
    }

    /// Closes the calls a previous run left live (it stopped without
    /// finishing them, e.g. killed): aborted, ended at their last stored
    /// progress (the start when there was none), with the alerts the feed
    /// holds for them, and their end in the feed like any call's.
    fn close_orphans(&self) -> Result<usize> {
        let orphans: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn.prepare("SELECT call_id FROM calls WHERE state = ?1")?;
            let ids = stmt.query_map(params![pb::CallState::Live as i32], |r| r.get(0))?;
            ids.collect::<rusqlite::Result<_>>()?
        };
        for call_id in &orphans {
            self.conn().execute(
                "UPDATE calls SET state = ?2, reason = 'the server stopped during the call',
                    ended_ms = CASE WHEN ended_ms = 0 THEN started_ms ELSE ended_ms END,
                    alerts = (SELECT COUNT(*) FILTER (WHERE kind = 'alert') - COUNT(*) FILTER (WHERE kind = 'retraction')
                              FROM feed WHERE call_id = ?1)
                 WHERE call_id = ?1",
                params![call_id, pb::CallState::Aborted as i32],
            )?;
            let (call, scorecard) = self.call(call_id)?.context("a call vanished from the store")?;
            let meta = Meta {
                call_id: call.call_id.clone(),
                team: call.team.clone(),
                agent_id: call.agent_id.clone(),
                severity: None,
                rule_id: None,
            };
            let ended = pb::AlertEvent {
                at_unix_ms: call.ended_unix_ms,
                event: Some(pb::alert_event::Event::CallEnded(pb::CallEnded {
                    call: Some(call),
                    scorecard,
                })),
                ..Default::default()
            };
            self.append(&meta, &ended)?;
        }
        Ok(orphans.len())
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

    fn search_calls(&self, query: &SearchQuery) -> Result<Vec<pb::CallInfo>> {
        search::search_calls(&self.conn(), query)
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

    fn audit(&self, e: &pb::AuditEvent) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO audit (at_ms, actor, role, action, call_id, peer, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![e.at_unix_ms, e.actor, e.role, e.action, e.call_id, e.peer, e.detail],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn audit_events(&self, q: &AuditQuery) -> Result<Vec<pb::AuditEvent>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{AUDIT_COLUMNS} WHERE seq > ?1 AND (?2 IS NULL OR at_ms >= ?2) AND (?3 IS NULL OR at_ms <= ?3)
             AND (?4 IS NULL OR actor = ?4) AND (?5 IS NULL OR call_id = ?5) ORDER BY seq LIMIT ?6"
        ))?;
        let rows = stmt.query_map(
            params![
                q.after_seq,
                q.since_unix_ms,
                q.until_unix_ms,
                q.actor,
                q.call_id,
                q.limit
            ],
            |r| {
                Ok(pb::AuditEvent {
                    seq: r.get(0)?,
                    at_unix_ms: r.get(1)?,
                    actor: r.get(2)?,
                    role: r.get(3)?,
                    action: r.get(4)?,
                    call_id: r.get(5)?,
                    peer: r.get(6)?,
                    detail: r.get(7)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn purge_before(&self, cutoff_unix_ms: i64) -> Result<Purged> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let live = pb::CallState::Live as i32;
        let old = params![cutoff_unix_ms, live];
        tx.execute(&format!("DELETE FROM transcript WHERE call_id IN ({PURGEABLE})"), old)?;
        tx.execute(&format!("DELETE FROM feed WHERE call_id IN ({PURGEABLE})"), old)?;
        let calls = tx.execute(&format!("DELETE FROM calls WHERE call_id IN ({PURGEABLE})"), old)?;
        let audit_events = tx.execute("DELETE FROM audit WHERE at_ms < ?1", params![cutoff_unix_ms])?;
        search::optimize(&tx)?;
        tx.commit()?;
        // secure_delete zeroed the rows in the pages written to the WAL;
        // the WAL still holds the pages' earlier images until it is copied
        // back and truncated.
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            tracing::warn!("the store's WAL could not be truncated (a reader holds it); purged text stays in it until the next purge");
        }
        Ok(Purged { calls, audit_events })
    }
}

const AUDIT_COLUMNS: &str = "SELECT seq, at_ms, actor, role, action, call_id, peer, detail FROM audit";

pub(super) const CALL_COLUMNS: &str =
    "SELECT call_id, agent_id, team, state, started_ms, ended_ms, audio_s, alerts, score, reason, scorecard FROM calls";

pub(super) type CallRow = (pb::CallInfo, Option<Vec<u8>>);

pub(super) fn call_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallRow> {
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

pub(super) fn decode_call((info, card): CallRow) -> Result<(pb::CallInfo, Option<pb::Scorecard>)> {
    let card = card
        .map(|b| pb::Scorecard::decode(b.as_slice()))
        .transpose()
        .context("a corrupt scorecard in the store")?;
    Ok((info, card))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn fresh() -> (Sqlite, tempfile::TempDir) {
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

    /// The store's files as bytes: the database and its WAL.
    pub(crate) fn file_bytes(dir: &Path) -> Vec<u8> {
        let mut bytes = std::fs::read(dir.join("callwatch.sqlite3")).unwrap();
        bytes.extend(std::fs::read(dir.join("callwatch.sqlite3-wal")).unwrap_or_default());
        bytes
    }

    pub(crate) fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    pub(crate) fn ended_call(store: &Sqlite, id: &str, ended_ms: i64, text: &str) {
        let info = pb::CallInfo {
            call_id: id.into(),
            state: pb::CallState::Live as i32,
            started_unix_ms: ended_ms - 1_000,
            ..Default::default()
        };
        store.begin_call(&info).unwrap();
        store
            .add_final(&pb::TranscriptRevision {
                call_id: id.into(),
                channel: 1,
                text: text.into(),
                is_final: true,
                ..Default::default()
            })
            .unwrap();
        let done = pb::CallInfo {
            state: pb::CallState::Ended as i32,
            ended_unix_ms: ended_ms,
            ..info
        };
        store.end_call(&done, None).unwrap();
    }

    #[test]
    fn purged_text_is_gone_from_the_files_bytes() {
        let (store, dir) = fresh();
        ended_call(&store, "old", 10_000, "zanzibarquokka wants a refund");
        ended_call(&store, "new", 90_000, "periwinkleotter asks about billing");
        assert!(
            contains(&file_bytes(dir.path()), "zanzibarquokka"),
            "the scan finds stored text"
        );
        assert_eq!(store.purge_before(50_000).unwrap().calls, 1);
        let bytes = file_bytes(dir.path());
        assert!(
            !contains(&bytes, "zanzibarquokka"),
            "the purged call's words are in the file"
        );
        assert!(contains(&bytes, "periwinkleotter"), "the newer call stays");
        drop(store);
        assert!(!contains(&file_bytes(dir.path()), "zanzibarquokka"));
    }

    #[test]
    fn the_audit_log_refuses_updates() {
        let (store, _dir) = fresh();
        store.audit(&pb::AuditEvent::default()).unwrap();
        let err = store
            .conn()
            .execute("UPDATE audit SET actor = 'someone else'", [])
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }

    /// A call whose session stored progress before the process died is
    /// closed as it was then: its end, audio, alerts and scorecard, and its
    /// end reaches the feed once.
    #[test]
    fn a_killed_calls_progress_survives_as_its_end() {
        let (store, dir) = fresh();
        let meta = Meta {
            call_id: "c1".into(),
            team: "t".into(),
            agent_id: "a1".into(),
            ..Default::default()
        };
        let mut info = pb::CallInfo {
            call_id: "c1".into(),
            team: "t".into(),
            agent_id: "a1".into(),
            state: pb::CallState::Live as i32,
            started_unix_ms: 1_000,
            ..Default::default()
        };
        store.begin_call(&info).unwrap();
        for (kind, id) in [("alert", 1), ("alert", 2), ("retraction", 1), ("alert", 3)] {
            let event = if kind == "alert" {
                pb::alert_event::Event::Alert(pb::Alert {
                    id,
                    call_id: "c1".into(),
                    ..Default::default()
                })
            } else {
                pb::alert_event::Event::Retraction(pb::Retraction {
                    call_id: "c1".into(),
                    alert_id: id,
                })
            };
            let event = pb::AlertEvent {
                event: Some(event),
                ..Default::default()
            };
            store.append(&meta, &event).unwrap();
        }
        info.ended_unix_ms = 9_000;
        info.audio_s = 7.5;
        let card = pb::Scorecard {
            score: Some(0.5),
            ..Default::default()
        };
        store.end_call(&info, Some(&card)).unwrap();
        drop(store);
        for _ in 0..2 {
            let reopened = Sqlite::open(dir.path()).unwrap();
            let (info, card) = reopened.call("c1").unwrap().unwrap();
            assert_eq!(info.state, pb::CallState::Aborted as i32);
            assert_eq!((info.ended_unix_ms, info.audio_s, info.alerts), (9_000, 7.5, 2));
            assert_eq!(card.unwrap().score, Some(0.5));
            let ends: Vec<_> = reopened
                .feed_after(Cursor(0), 100)
                .unwrap()
                .into_iter()
                .filter_map(|e| match e.event.event {
                    Some(pb::alert_event::Event::CallEnded(ended)) => Some(ended),
                    _ => None,
                })
                .collect();
            assert_eq!(ends.len(), 1, "once, however often the store is reopened");
            assert_eq!(ends[0].call.as_ref().unwrap().ended_unix_ms, 9_000);
        }
    }
}
