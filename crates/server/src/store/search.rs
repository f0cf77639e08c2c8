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

#[cfg(test)]
mod tests {
    use super::super::seed::{self, SeedCall};
    use super::super::sqlite::tests::fresh;
    use super::super::CallStore;
    use super::*;

    fn seeded() -> (super::super::sqlite::Sqlite, tempfile::TempDir, Vec<SeedCall>) {
        let (store, dir) = fresh();
        let calls = seed::generate(120, 7);
        seed::write(&store, &calls).unwrap();
        (store, dir, calls)
    }

    /// What the store returns, as ids; and the ids the test expects from
    /// the seed, newest first like the store.
    fn found(store: &dyn CallStore, q: SearchQuery) -> Vec<String> {
        let q = SearchQuery { limit: 1000, ..q };
        store.search_calls(&q).unwrap().into_iter().map(|c| c.call_id).collect()
    }

    fn expected(calls: &[SeedCall], keep: impl Fn(&SeedCall) -> bool) -> Vec<String> {
        let mut ids: Vec<_> = calls.iter().filter(|c| keep(c)).map(|c| &c.info).collect();
        ids.sort_by_key(|c| std::cmp::Reverse(c.started_unix_ms));
        ids.into_iter().map(|c| c.call_id.clone()).collect()
    }

    fn said(c: &SeedCall, words: &str, channel: Option<pb::Channel>) -> bool {
        c.finals
            .iter()
            .any(|f| f.text.contains(words) && channel.is_none_or(|ch| f.channel == ch as i32))
    }

    #[test]
    fn words_match_exactly_the_calls_that_said_them_by_party() {
        let (store, _dir, calls) = seeded();
        let words = "late fee";
        let all = found(
            &store,
            SearchQuery {
                words: Some(words.into()),
                ..Default::default()
            },
        );
        assert!(!all.is_empty());
        assert_eq!(all, expected(&calls, |c| said(c, words, None)));
        // Words the customer says are never found on the agent's channel.
        let agent = SearchQuery {
            words: Some(words.into()),
            channel: Some(pb::Channel::Agent as i32),
            ..Default::default()
        };
        assert!(found(&store, agent).is_empty());
        let brief = SearchQuery {
            words: Some("BRIEF hold".into()),
            channel: Some(pb::Channel::Agent as i32),
            team: Some("sales".into()),
            ..Default::default()
        };
        assert_eq!(
            found(&store, brief),
            expected(&calls, |c| c.info.team == "sales"
                && said(c, "brief hold", Some(pb::Channel::Agent)))
        );
        // Query syntax in the words is just words.
        assert!(found(
            &store,
            SearchQuery {
                words: Some("\"fee OR NEAR(".into()),
                ..Default::default()
            }
        )
        .is_empty());
    }

    #[test]
    fn a_rule_score_range_date_range_and_outcome_select_exactly_their_calls() {
        let (store, _dir, calls) = seeded();
        let rule = SearchQuery {
            rule_fired: Some("dead_air".into()),
            ..Default::default()
        };
        let by_rule = expected(&calls, |c| c.rules.contains(&"dead_air"));
        assert!(!by_rule.is_empty());
        assert_eq!(found(&store, rule), by_rule);

        let scores = SearchQuery {
            min_score: Some(50.0),
            max_score: Some(75.0),
            ..Default::default()
        };
        let in_range = expected(&calls, |c| c.info.score.is_some_and(|s| (50.0..=75.0).contains(&s)));
        assert!(!in_range.is_empty() && in_range.len() < calls.len());
        assert_eq!(found(&store, scores), in_range);

        let from = seed::FIRST_START_MS + 30 * seed::SPACING_MS;
        let to = seed::FIRST_START_MS + 70 * seed::SPACING_MS;
        let dates = SearchQuery {
            from_unix_ms: Some(from),
            to_unix_ms: Some(to),
            agent_id: Some("a4".into()),
            ..Default::default()
        };
        let in_dates = expected(&calls, |c| {
            c.info.agent_id == "a4" && c.info.started_unix_ms >= from && c.info.started_unix_ms < to
        });
        assert!(!in_dates.is_empty());
        assert_eq!(found(&store, dates), in_dates);

        let dropped = SearchQuery {
            states: vec![pb::CallState::Dropped as i32],
            min_duration_s: Some(120.0),
            ..Default::default()
        };
        assert_eq!(
            found(&store, dropped),
            expected(&calls, |c| c.info.state == pb::CallState::Dropped as i32
                && c.info.audio_s >= 120.0)
        );
    }

    #[test]
    fn pages_follow_on_without_gaps_or_repeats() {
        let (store, _dir, calls) = seeded();
        let mut pages = Vec::new();
        for offset in (0..calls.len() as u32).step_by(25) {
            let q = SearchQuery {
                team: Some("billing".into()),
                offset,
                limit: 25,
                ..Default::default()
            };
            pages.extend(store.search_calls(&q).unwrap().into_iter().map(|c| c.call_id));
        }
        assert_eq!(pages, expected(&calls, |c| c.info.team == "billing"));
    }

    #[test]
    fn a_replaced_or_purged_final_is_no_longer_found() {
        let (store, _dir, calls) = seeded();
        let mut changed = calls[0].finals[0].clone();
        changed.text = "zanzibarquokka".into();
        store.add_final(&changed).unwrap();
        let old = calls[0].finals[0].text.clone();
        let q = |w: &str| SearchQuery {
            words: Some(w.into()),
            agent_id: Some(calls[0].info.agent_id.clone()),
            ..Default::default()
        };
        assert_eq!(found(&store, q("zanzibarquokka")), ["c0"]);
        let still = expected(&calls, |c| {
            c.info.agent_id == calls[0].info.agent_id
                && c.finals.iter().any(|f| f.text == old)
                && (c.info.call_id != "c0" || c.finals[1..].iter().any(|f| f.text == old))
        });
        assert_eq!(found(&store, q(&old)), still);
        store.purge_before(seed::FIRST_START_MS + seed::SPACING_MS).unwrap();
        assert!(found(&store, q("zanzibarquokka")).is_empty());
    }
}
