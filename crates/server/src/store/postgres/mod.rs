//! [`CallStore`] on PostgreSQL (15 or later), shared by every node of a
//! cluster (`[cluster] postgres`).
//!
//! The same tables as SQLite's (`migrations/`), with the same unique keys,
//! so a retried write never duplicates a row whichever node retries it:
//! `calls.call_id`, `transcript (call_id, channel, utterance_id)` and
//! `feed_once (call_id, kind, alert_id)` (see [`super::once_key`]). The
//! feed's `seq` is a `BIGSERIAL`: one order for every node's appends, and
//! the cursor (`c42`). A claim is an `ack` row in the feed, so the unique
//! key makes it exactly-once across nodes: the second claimer's append is
//! not fresh and [`CallStore::check_claim`] names the first.
//!
//! Unlike SQLite's, opening does not close calls left live: in a cluster
//! they may be another node's live calls (closing a dead node's calls is
//! the lease's job, not the store's).
//!
//! The trait blocks, so the synchronous `postgres` client is used (it runs
//! its own small runtime; call it from blocking threads only, as the trait
//! says). One connection, taken in turn like SQLite's, re-opened on the
//! next call after it breaks (a database restart): the failed write is
//! reported to [`super::watched::Watched`], the next one that succeeds
//! restores health.

mod schema;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use postgres::{Client, NoTls, Row};
use prost::Message;

use super::{once_key, AckError, Appended, AuditQuery, CallStore, Purged, SearchQuery};
use crate::cursor::{Cursor, FeedEntry};
use crate::filter::Meta;
use crate::pb;

/// How long a connection attempt may take before the write fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Postgres {
    config: postgres::Config,
    /// `None` after a broken connection, until the next call re-opens it.
    client: Mutex<Option<Client>>,
}

impl Postgres {
    /// Connects to `url` (`postgres://user[:password]@host:port/db`; the
    /// password, when the URL has none, from `PGPASSWORD`) and brings the
    /// schema up to date. Blocks: call from a blocking thread.
    pub fn connect(url: &str) -> Result<Self> {
        let mut config: postgres::Config = url
            .parse()
            .with_context(|| format!("cluster.postgres: not a PostgreSQL URL: {}", redacted(url)))?;
        if config.get_password().is_none() {
            if let Ok(password) = std::env::var("PGPASSWORD") {
                config.password(password);
            }
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("callwatch");
        let mut client = config
            .connect(NoTls)
            .with_context(|| format!("cannot connect to PostgreSQL at {}", redacted(url)))?;
        schema::migrate(&mut client)
            .with_context(|| format!("{}: cannot bring the schema up to date", redacted(url)))?;
        Ok(Self {
            config,
            client: Mutex::new(Some(client)),
        })
    }

    /// Runs `f` on the connection, opening it first if the last one broke.
    fn with<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>) -> Result<T> {
        off_the_runtime(|| {
            let mut slot: MutexGuard<'_, Option<Client>> = self.client.lock().expect("store lock poisoned");
            if slot.as_ref().is_none_or(Client::is_closed) {
                *slot = None;
                *slot = Some(self.config.connect(NoTls).context("cannot reconnect to PostgreSQL")?);
            }
            let client = slot.as_mut().expect("connected above");
            let out = f(client);
            if client.is_closed() {
                *slot = None;
            }
            Ok(out?)
        })
    }
}

/// Runs `f`, which blocks on the client's own runtime. A thread that drives
/// tokio tasks cannot start another runtime, so from one the call first
/// hands that thread's tasks to others (`block_in_place`). The trait asks
/// for blocking threads; this keeps a stray call from an async task a
/// stall, not a panic.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The URL with its password hidden, for errors and logs.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// `alert_id` as stored: -1 for events about no alert.
fn alert_key(event: &pb::AlertEvent) -> (&'static str, i64) {
    let (kind, alert_id) = once_key(event);
    (kind, alert_id.map_or(-1, |i| i as i64))
}

impl CallStore for Postgres {
    fn begin_call(&self, call: &pb::CallInfo) -> Result<bool> {
        self.with(|c| {
            let row = c.query_one(
                "WITH new AS (
                    INSERT INTO calls (call_id, agent_id, team, state, started_ms) VALUES ($1, $2, $3, $4, $5)
                    ON CONFLICT (call_id) DO NOTHING RETURNING TRUE)
                 SELECT EXISTS (SELECT 1 FROM new)
                     OR EXISTS (SELECT 1 FROM calls WHERE call_id = $1 AND agent_id = $2 AND team = $3 AND started_ms = $5)",
                &[&call.call_id, &call.agent_id, &call.team, &call.state, &call.started_unix_ms],
            )?;
            Ok(row.get(0))
        })
    }

    fn end_call(&self, call: &pb::CallInfo, scorecard: Option<&pb::Scorecard>) -> Result<()> {
        let card = scorecard.map(|s| s.encode_to_vec());
        self.with(|c| {
            c.execute(
                "UPDATE calls SET state = $2, ended_ms = $3, audio_s = $4, alerts = $5, score = $6, reason = $7, scorecard = $8
                 WHERE call_id = $1",
                &[
                    &call.call_id,
                    &call.state,
                    &call.ended_unix_ms,
                    &call.audio_s,
                    &(call.alerts as i32),
                    &call.score,
                    &call.reason,
                    &card,
                ],
            )
        })?;
        Ok(())
    }

    fn add_final(&self, t: &pb::TranscriptRevision) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO transcript VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (call_id, channel, utterance_id)
                 DO UPDATE SET start_s = EXCLUDED.start_s, end_s = EXCLUDED.end_s, text = EXCLUDED.text",
                &[
                    &t.call_id,
                    &t.channel,
                    &(t.utterance_id as i64),
                    &t.start_s,
                    &t.end_s,
                    &t.text,
                ],
            )
        })?;
        Ok(())
    }

    fn append(&self, meta: &Meta, event: &pb::AlertEvent) -> Result<Appended> {
        let (kind, alert_id) = alert_key(event);
        let body = event.encode_to_vec();
        // One statement: the insert, or (after a conflict) the row that was
        // there first. A row committed by another node between the two is
        // seen by the second part's fresh snapshot in READ COMMITTED.
        let (seq, fresh) = self.with(|c| {
            let row = c.query_opt(
                "INSERT INTO feed (call_id, team, agent_id, severity, rule_id, kind, alert_id, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT ON CONSTRAINT feed_once DO NOTHING RETURNING seq",
                &[
                    &meta.call_id,
                    &meta.team,
                    &meta.agent_id,
                    &meta.severity,
                    &meta.rule_id,
                    &kind,
                    &alert_id,
                    &body,
                ],
            )?;
            if let Some(row) = row {
                return Ok((row.get::<_, i64>(0), true));
            }
            let row = c.query_one(
                "SELECT seq FROM feed WHERE call_id = $1 AND kind = $2 AND alert_id = $3",
                &[&meta.call_id, &kind, &alert_id],
            )?;
            Ok((row.get(0), false))
        })?;
        Ok(Appended {
            cursor: Cursor(seq),
            fresh,
        })
    }

    fn feed_after(&self, after: Cursor, limit: usize) -> Result<Vec<FeedEntry>> {
        let rows = self.with(|c| {
            c.query(
                "SELECT seq, call_id, team, agent_id, severity, rule_id, body FROM feed WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after.0, &(limit as i64)],
            )
        })?;
        rows.iter()
            .map(|r| {
                let cursor = Cursor(r.get(0));
                let body: &[u8] = r.get(6);
                let mut event = pb::AlertEvent::decode(body).context("a corrupt feed row in the store")?;
                event.cursor = cursor.to_string();
                let meta = Meta {
                    call_id: r.get(1),
                    team: r.get(2),
                    agent_id: r.get(3),
                    severity: r.get(4),
                    rule_id: r.get(5),
                };
                Ok(FeedEntry { cursor, meta, event })
            })
            .collect()
    }

    fn last(&self) -> Result<Cursor> {
        let row = self.with(|c| c.query_one("SELECT COALESCE(MAX(seq), 0) FROM feed", &[]))?;
        Ok(Cursor(row.get(0)))
    }

    fn before_last(&self, n: u32) -> Result<Cursor> {
        let row = self.with(|c| {
            c.query_one(
                "SELECT COALESCE((SELECT seq FROM feed ORDER BY seq DESC LIMIT 1 OFFSET $1), 0)",
                &[&i64::from(n)],
            )
        })?;
        Ok(Cursor(row.get(0)))
    }

    fn check_claim(&self, call_id: &str, alert_id: u64) -> Result<Result<Meta, AckError>> {
        let id = alert_id as i64;
        let (owner, claim) = self.with(|c| {
            let owner = c.query_opt(
                "SELECT team, agent_id, severity, rule_id FROM feed WHERE call_id = $1 AND kind = 'alert' AND alert_id = $2",
                &[&call_id, &id],
            )?;
            let claim = c.query_opt(
                "SELECT body FROM feed WHERE call_id = $1 AND kind = 'ack' AND alert_id = $2",
                &[&call_id, &id],
            )?;
            Ok((owner, claim))
        })?;
        let Some(owner) = owner else {
            return Ok(Err(AckError::NoSuchAlert(call_id.to_owned(), alert_id)));
        };
        if let Some(claim) = claim {
            let by = match pb::AlertEvent::decode(claim.get::<_, &[u8]>(0))?.event {
                Some(pb::alert_event::Event::Acknowledgement(a)) => a.by,
                _ => String::from("someone"),
            };
            return Ok(Err(AckError::AlreadyClaimed(call_id.to_owned(), alert_id, by)));
        }
        Ok(Ok(Meta {
            call_id: call_id.to_owned(),
            team: owner.get(0),
            agent_id: owner.get(1),
            severity: owner.get(2),
            rule_id: owner.get(3),
        }))
    }

    fn call(&self, call_id: &str) -> Result<Option<(pb::CallInfo, Option<pb::Scorecard>)>> {
        let row = self.with(|c| c.query_opt(&format!("{CALL_COLUMNS} WHERE call_id = $1"), &[&call_id]))?;
        row.as_ref().map(call_row).transpose()
    }

    fn recent_calls(&self, team: Option<&str>, limit: u32) -> Result<Vec<pb::CallInfo>> {
        let rows = self.with(|c| {
            c.query(
                &format!(
                    "{CALL_COLUMNS} WHERE state <> $1 AND ($2::TEXT IS NULL OR team = $2) ORDER BY started_ms DESC LIMIT $3"
                ),
                &[&(pb::CallState::Live as i32), &team, &i64::from(limit)],
            )
        })?;
        rows.iter().map(|r| Ok(call_row(r)?.0)).collect()
    }

    fn search_calls(&self, q: &SearchQuery) -> Result<Vec<pb::CallInfo>> {
        // The same conditions as SQLite's (`store/search.rs`); the words are
        // one phrase, never query syntax.
        let sql = format!(
            "{CALL_COLUMNS} WHERE state <> $1
               AND ($2::TEXT IS NULL OR team = $2) AND ($3::TEXT IS NULL OR agent_id = $3)
               AND ($4::BIGINT IS NULL OR started_ms >= $4) AND ($5::BIGINT IS NULL OR started_ms < $5)
               AND ($6::FLOAT8 IS NULL OR score >= $6) AND ($7::FLOAT8 IS NULL OR score <= $7)
               AND ($8::FLOAT8 IS NULL OR (ended_ms - started_ms) >= $8 * 1000.0)
               AND ($9::FLOAT8 IS NULL OR (ended_ms - started_ms) <= $9 * 1000.0)
               AND (cardinality($10::INT[]) = 0 OR state = ANY($10))
               AND ($11::TEXT IS NULL OR EXISTS (SELECT 1 FROM feed f WHERE f.call_id = calls.call_id
                                                   AND f.kind = 'alert' AND f.rule_id = $11))
               AND ($12::TEXT IS NULL OR call_id IN (
                     SELECT t.call_id FROM transcript t
                     WHERE to_tsvector('simple', t.text) @@ phraseto_tsquery('simple', $12)
                       AND ($13::INT IS NULL OR t.channel = $13)))
             ORDER BY started_ms DESC, call_id DESC LIMIT $14 OFFSET $15"
        );
        let rows = self.with(|c| {
            c.query(
                &sql,
                &[
                    &(pb::CallState::Live as i32),
                    &q.team,
                    &q.agent_id,
                    &q.from_unix_ms,
                    &q.to_unix_ms,
                    &q.min_score,
                    &q.max_score,
                    &q.min_duration_s,
                    &q.max_duration_s,
                    &q.states,
                    &q.rule_fired,
                    &q.words,
                    &q.channel,
                    &i64::from(q.limit),
                    &i64::from(q.offset),
                ],
            )
        })?;
        rows.iter().map(|r| Ok(call_row(r)?.0)).collect()
    }

    fn record(&self, call_id: &str) -> Result<Option<pb::CallRecord>> {
        let Some((call, scorecard)) = self.call(call_id)? else {
            return Ok(None);
        };
        let (lines, events) = self.with(|c| {
            let lines = c.query(
                "SELECT channel, utterance_id, start_s, end_s, text FROM transcript WHERE call_id = $1 ORDER BY start_s, channel",
                &[&call_id],
            )?;
            let events = c.query("SELECT body FROM feed WHERE call_id = $1 ORDER BY seq", &[&call_id])?;
            Ok((lines, events))
        })?;
        let transcript = lines
            .iter()
            .map(|r| pb::TranscriptRevision {
                call_id: call_id.to_owned(),
                channel: r.get(0),
                utterance_id: r.get::<_, i64>(1) as u64,
                revision: 0,
                is_final: true,
                start_s: r.get(2),
                end_s: r.get(3),
                text: r.get(4),
                // The text keeps its markers; their places are not stored.
                redacted: Vec::new(),
            })
            .collect();
        let mut record = pb::CallRecord {
            call: Some(call),
            transcript,
            scorecard,
            ..Default::default()
        };
        for row in &events {
            use pb::alert_event::Event;
            match pb::AlertEvent::decode(row.get::<_, &[u8]>(0))?.event {
                Some(Event::Alert(a)) => record.alerts.push(a),
                Some(Event::Retraction(r)) => record.retractions.push(r),
                Some(Event::Acknowledgement(a)) => record.acknowledgements.push(a),
                _ => {}
            }
        }
        Ok(Some(record))
    }

    fn audit(&self, e: &pb::AuditEvent) -> Result<i64> {
        let row = self.with(|c| {
            c.query_one(
                "INSERT INTO audit (at_ms, actor, role, action, call_id, peer, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 RETURNING seq",
                &[&e.at_unix_ms, &e.actor, &e.role, &e.action, &e.call_id, &e.peer, &e.detail],
            )
        })?;
        Ok(row.get(0))
    }

    fn audit_events(&self, q: &AuditQuery) -> Result<Vec<pb::AuditEvent>> {
        let rows = self.with(|c| {
            c.query(
                "SELECT seq, at_ms, actor, role, action, call_id, peer, detail FROM audit
                 WHERE seq > $1 AND ($2::BIGINT IS NULL OR at_ms >= $2) AND ($3::BIGINT IS NULL OR at_ms <= $3)
                 AND ($4::TEXT IS NULL OR actor = $4) AND ($5::TEXT IS NULL OR call_id = $5) ORDER BY seq LIMIT $6",
                &[
                    &q.after_seq,
                    &q.since_unix_ms,
                    &q.until_unix_ms,
                    &q.actor,
                    &q.call_id,
                    &i64::from(q.limit),
                ],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| pb::AuditEvent {
                seq: r.get(0),
                at_unix_ms: r.get(1),
                actor: r.get(2),
                role: r.get(3),
                action: r.get(4),
                call_id: r.get(5),
                peer: r.get(6),
                detail: r.get(7),
            })
            .collect())
    }

    fn purge_before(&self, cutoff_unix_ms: i64) -> Result<Purged> {
        let live = pb::CallState::Live as i32;
        let purged = self.with(|c| {
            let mut tx = c.transaction()?;
            let old: [&(dyn postgres::types::ToSql + Sync); 2] = [&cutoff_unix_ms, &live];
            tx.execute(&format!("DELETE FROM transcript WHERE call_id IN ({PURGEABLE})"), &old)?;
            tx.execute(&format!("DELETE FROM feed WHERE call_id IN ({PURGEABLE})"), &old)?;
            let calls = tx.execute(&format!("DELETE FROM calls WHERE call_id IN ({PURGEABLE})"), &old)?;
            let audit_events = tx.execute("DELETE FROM audit WHERE at_ms < $1", &[&cutoff_unix_ms])?;
            tx.commit()?;
            // Deleted rows stay in the table's pages until a vacuum prunes
            // them; run it now rather than at autovacuum's leisure.
            c.batch_execute("VACUUM transcript, feed, calls, audit")?;
            Ok(Purged {
                calls: calls as usize,
                audit_events: audit_events as usize,
            })
        })?;
        Ok(purged)
    }
}

/// Calls a purge removes: ended (not live) before the cutoff `$1`.
const PURGEABLE: &str = "SELECT call_id FROM calls WHERE state <> $2 AND GREATEST(started_ms, ended_ms) < $1";

const CALL_COLUMNS: &str =
    "SELECT call_id, agent_id, team, state, started_ms, ended_ms, audio_s, alerts, score, reason, scorecard FROM calls";

fn call_row(r: &Row) -> Result<(pb::CallInfo, Option<pb::Scorecard>)> {
    let info = pb::CallInfo {
        call_id: r.get(0),
        agent_id: r.get(1),
        team: r.get(2),
        state: r.get(3),
        started_unix_ms: r.get(4),
        ended_unix_ms: r.get(5),
        audio_s: r.get(6),
        alerts: r.get::<_, i32>(7) as u32,
        score: r.get(8),
        reason: r.get(9),
        ..Default::default()
    };
    let card = r
        .get::<_, Option<&[u8]>>(10)
        .map(pb::Scorecard::decode)
        .transpose()
        .context("a corrupt scorecard in the store")?;
    Ok((info, card))
}

#[cfg(test)]
mod tests;
