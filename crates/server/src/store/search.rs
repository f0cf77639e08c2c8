//! Finding past calls on SQLite: the full-text index over the stored
//! (already redacted) finals, and the query behind
//! [`super::CallStore::search_calls`].
//!
//! `transcript_fts` is an FTS5 index whose content is the `transcript`
//! table itself (no second copy of the text); triggers keep it in step with
//! every insert, replace and delete, so a purge removes a call's words from
//! the index too (and [`optimize`] rewrites the index so they are gone from
//! its pages).

use anyhow::Result;
use rusqlite::{params, Connection};

use super::sqlite::{call_row, decode_call, CALL_COLUMNS};
use super::SearchQuery;
use crate::pb;

/// Added to the store's schema. `recursive_triggers` makes `INSERT OR
/// REPLACE` (a repeated final) fire the delete trigger for the row it
/// replaces.
pub(super) const SCHEMA: &str = "
PRAGMA recursive_triggers = ON;
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_ms);
CREATE VIRTUAL TABLE IF NOT EXISTS transcript_fts USING fts5(text, content='transcript', content_rowid='rowid');
CREATE TRIGGER IF NOT EXISTS transcript_fts_insert AFTER INSERT ON transcript BEGIN
    INSERT INTO transcript_fts (rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER IF NOT EXISTS transcript_fts_delete AFTER DELETE ON transcript BEGIN
    INSERT INTO transcript_fts (transcript_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER IF NOT EXISTS transcript_fts_update AFTER UPDATE ON transcript BEGIN
    INSERT INTO transcript_fts (transcript_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO transcript_fts (rowid, text) VALUES (new.rowid, new.text);
END;
";

/// Creates the index (filling it from a store written before it existed).
pub(super) fn create(conn: &Connection) -> rusqlite::Result<()> {
    let existed: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'transcript_fts')",
        [],
        |r| r.get(0),
    )?;
    conn.execute_batch(SCHEMA)?;
    if !existed {
        conn.execute("INSERT INTO transcript_fts (transcript_fts) VALUES ('rebuild')", [])?;
    }
    Ok(())
}

/// Merges the index into one segment, so deleted words no longer sit in
/// old segments' pages (with `secure_delete`, freed pages are zeroed).
pub(super) fn optimize(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("INSERT INTO transcript_fts (transcript_fts) VALUES ('optimize')", [])?;
    Ok(())
}

/// The words as one FTS5 phrase: the user's text is never parsed as query
/// syntax (quotes are doubled), and the words must be said in this order.
fn phrase(words: &str) -> String {
    format!("\"{}\"", words.replace('"', "\"\""))
}

pub(super) fn search_calls(conn: &Connection, q: &SearchQuery) -> Result<Vec<pb::CallInfo>> {
    let states: String = q.states.iter().map(|s| format!(",{s},")).collect();
    let sql = format!(
        "{CALL_COLUMNS} WHERE state != ?1
           AND (?2 IS NULL OR team = ?2) AND (?3 IS NULL OR agent_id = ?3)
           AND (?4 IS NULL OR started_ms >= ?4) AND (?5 IS NULL OR started_ms < ?5)
           AND (?6 IS NULL OR score >= ?6) AND (?7 IS NULL OR score <= ?7)
           AND (?8 IS NULL OR (ended_ms - started_ms) >= ?8 * 1000.0)
           AND (?9 IS NULL OR (ended_ms - started_ms) <= ?9 * 1000.0)
           AND (?10 = '' OR instr(?10, ',' || state || ',') > 0)
           AND (?11 IS NULL OR EXISTS (SELECT 1 FROM feed f WHERE f.call_id = calls.call_id
                                        AND f.kind = 'alert' AND f.rule_id = ?11))
           AND (?12 IS NULL OR call_id IN (SELECT t.call_id FROM transcript_fts
                                            JOIN transcript t ON t.rowid = transcript_fts.rowid
                                            WHERE transcript_fts MATCH ?12 AND (?13 IS NULL OR t.channel = ?13)))
         ORDER BY started_ms DESC, call_id DESC LIMIT ?14 OFFSET ?15"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            pb::CallState::Live as i32,
            q.team,
            q.agent_id,
            q.from_unix_ms,
            q.to_unix_ms,
            q.min_score,
            q.max_score,
            q.min_duration_s,
            q.max_duration_s,
            states,
            q.rule_fired,
            q.words.as_deref().map(phrase),
            q.channel,
            q.limit,
            q.offset,
        ],
        call_row,
    )?;
    rows.map(|r| Ok(decode_call(r?)?.0)).collect()
}
