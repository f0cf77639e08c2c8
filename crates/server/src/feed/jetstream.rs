//! [`Feed`] for a cluster: record in the call store, then publish on a NATS
//! JetStream stream that every node follows.
//!
//! Store and stream: the store keeps the durable record (calls, alerts,
//! claims, what `GetCall` and retention read); the stream is the cluster's
//! one order and its fan-out. A feed cursor is the stream's sequence
//! (`c<seq>`), so a dashboard resumes on any node, after any node's
//! restart. Where the store's order (one per node with SQLite) and the
//! stream's differ, the stream's wins.
//!
//! Exactly once: each event is published with `Nats-Msg-Id` =
//! `<call id>/<store cursor>`, the store's own idempotency key. A retried
//! record (the store answers `fresh: false`) publishes the stored event
//! again under the same id, only to learn the first one's sequence:
//! JetStream drops the repeat within the stream's duplicate window
//! ([`DUPLICATE_WINDOW`], 1 h; a repeat later than that is published
//! again, with the first one's content). Publishing a repeat also fills the
//! gap a node leaves when it dies between the store's commit and the
//! publish, once the record is retried.
//!
//! Subjects: `callwatch.feed.<team>.<agent>.<severity>.<rule>`, each token
//! escaped ([`token`]), so a supervisor's team, agent and rule filters are
//! a subject filter on the server; the minimum severity is checked here.
//!
//! Followers: one ordered pull consumer each (ephemeral, in memory on the
//! server), starting at a sequence. The server holds the backlog, so a
//! slow follower costs recording nothing and nothing is cut off:
//! [`Feed::lagged`] stays 0.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use async_nats::jetstream::{self, consumer, stream};
use prost::Message as _;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;

use super::{Feed, Following, Out, Start};
use crate::cursor::Cursor;
use crate::filter::{Filter, Meta};
use crate::pb;
use crate::store::{Appended, CallStore};

/// The stream's name, shared by every node of a cluster.
pub const STREAM: &str = "CALLWATCH_FEED";
/// Subjects under it: `<PREFIX>.<team>.<agent>.<severity>.<rule>`.
pub const PREFIX: &str = "callwatch.feed";
/// How long JetStream remembers a `Nats-Msg-Id`: a record retried within
/// it is never published twice.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);
/// How long a publish may wait for the stream's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

pub struct JetStream {
    store: Arc<dyn CallStore>,
    js: jetstream::Context,
    /// Where `record`, called from plain threads, runs its publish.
    runtime: tokio::runtime::Handle,
}

impl JetStream {
    /// Connects to `servers` (`nats://host:port`) and creates the feed's
    /// stream if no node has yet. Must run on a Tokio runtime.
    pub async fn connect(store: Arc<dyn CallStore>, servers: &[String], node: &str) -> Result<Self> {
        let addrs = servers
            .iter()
            .map(|s| {
                s.parse::<async_nats::ServerAddr>()
                    .with_context(|| format!("bad NATS server address {s:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let client = async_nats::ConnectOptions::new()
            .name(format!("callwatch {node}"))
            // A server that is down at start is a clear error; one that goes
            // away later is reconnected to in the background.
            .connect(addrs)
            .await
            .with_context(|| format!("cannot connect to NATS at {}", servers.join(", ")))?;
        let mut js = jetstream::new(client);
        js.set_timeout(PUBLISH_TIMEOUT);
        js.get_or_create_stream(stream::Config {
            name: STREAM.into(),
            subjects: vec![format!("{PREFIX}.>")],
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .with_context(|| format!("cannot create the JetStream stream {STREAM} (is nats-server running with -js?)"))?;
        Ok(Self {
            store,
            js,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    async fn publish(&self, meta: &Meta, event: &pb::AlertEvent, id: String) -> Result<u64> {
        let publish = jetstream::context::Publish::build()
            .payload(event.encode_to_vec().into())
            .message_id(id);
        let ack = self
            .js
            .send_publish(subject(meta), publish)
            .await
            .context("cannot publish to the feed stream")?
            .await
            .context("the feed stream did not acknowledge an event")?;
        Ok(ack.sequence)
    }

    /// The stream's last sequence (0 when empty).
    async fn last(&self) -> Result<u64> {
        let mut stream = self.js.get_stream(STREAM).await?;
        Ok(stream.info().await?.state.last_sequence)
    }

    async fn run(self: Arc<Self>, filter: Filter, start: Start, out: Out, mut shutdown: watch::Receiver<bool>) {
        let first = match start {
            Start::After(c) => Ok(c.0.max(0) as u64 + 1),
            Start::Now => self.last().await.map(|last| last + 1),
            Start::Backlog(n) => self.last().await.map(|last| last.saturating_sub(u64::from(n)) + 1),
        };
        let messages = match first {
            Ok(first) => self.consume(&filter, first).await,
            Err(e) => Err(e),
        };
        let mut messages = match messages {
            Ok(messages) => messages,
            Err(e) => return internal(&out, e).await,
        };
        loop {
            tokio::select! {
                message = messages.next() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(e)) => return internal(&out, e.into()).await,
                        None => return,
                    };
                    let event = match decode(&message) {
                        Ok(event) if matches(&filter, &message.subject, &event) => event,
                        Ok(_) => continue,
                        Err(e) => return internal(&out, e).await,
                    };
                    if out.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                _ = shutdown.changed() => return,
                _ = out.closed() => return,
            }
        }
    }

    async fn consume(&self, filter: &Filter, first: u64) -> Result<consumer::pull::Ordered> {
        let stream = self.js.get_stream(STREAM).await?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter_subject(filter),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: first },
                ..Default::default()
            })
            .await?;
        Ok(consumer.messages().await?)
    }
}

impl Feed for JetStream {
    fn record(&self, meta: Meta, mut event: pb::AlertEvent) -> Result<Appended> {
        event.call_id.clone_from(&meta.call_id);
        event.agent_id.clone_from(&meta.agent_id);
        event.team.clone_from(&meta.team);
        let appended = self.store.append(&meta, &event)?;
        let id = format!("{}/{}", meta.call_id, appended.cursor);
        // A repeat publishes what the store kept (the first claim, not the
        // second claimer's), under the same id.
        let (meta, event) = if appended.fresh {
            (meta, event)
        } else {
            let before = Cursor(appended.cursor.0 - 1);
            let first = self.store.feed_after(before, 1)?.pop();
            let first = first
                .filter(|e| e.cursor == appended.cursor)
                .with_context(|| format!("the store has no feed entry {} for a repeated event", appended.cursor))?;
            (first.meta, first.event)
        };
        let sequence = self.runtime.block_on(self.publish(&meta, &event, id))?;
        Ok(Appended {
            cursor: Cursor(sequence as i64),
            fresh: appended.fresh,
        })
    }

    fn follow(self: Arc<Self>, filter: Filter, start: Start, out: Out, shutdown: watch::Receiver<bool>) -> Following {
        Box::pin(self.run(filter, start, out, shutdown))
    }

    fn lagged(&self) -> u64 {
        0
    }
}

/// The event in `message`, its cursor set from the stream sequence.
fn decode(message: &jetstream::Message) -> Result<pb::AlertEvent> {
    let info = message
        .info()
        .map_err(|e| anyhow::anyhow!("a feed message without its metadata: {e}"))?;
    let mut event =
        pb::AlertEvent::decode(message.payload.clone()).context("a feed message that is not an AlertEvent")?;
    event.cursor = Cursor(info.stream_sequence as i64).to_string();
    Ok(event)
}

/// The minimum severity, which no subject filter can say.
fn matches(filter: &Filter, subject: &str, event: &pb::AlertEvent) -> bool {
    let severity = subject.split('.').nth(4).and_then(|t| t.parse::<i32>().ok());
    filter.matches(&Meta {
        call_id: event.call_id.clone(),
        team: event.team.clone(),
        agent_id: event.agent_id.clone(),
        severity,
        rule_id: filter.rule_id.clone(),
    })
}

async fn internal(out: &Out, e: anyhow::Error) {
    tracing::error!("cannot read the alert feed from NATS: {e:#}");
    let _ = out
        .send(Err(tonic::Status::internal("cannot read the alert feed from NATS")))
        .await;
}

/// The subject an event is published on.
pub fn subject(meta: &Meta) -> String {
    let severity = meta.severity.map_or_else(|| NONE.to_owned(), |s| s.to_string());
    format!(
        "{PREFIX}.{}.{}.{}.{}",
        token(&meta.team),
        token(&meta.agent_id),
        severity,
        meta.rule_id.as_deref().map_or_else(|| NONE.to_owned(), token)
    )
}

/// The subject filter that selects what `filter` can say as subjects.
pub fn filter_subject(filter: &Filter) -> String {
    let or_any = |v: &Option<String>| v.as_deref().map_or_else(|| "*".to_owned(), token);
    format!(
        "{PREFIX}.{}.{}.*.{}",
        or_any(&filter.team),
        or_any(&filter.agent_id),
        or_any(&filter.rule_id)
    )
}

/// An absent severity or rule (call start and end).
const NONE: &str = "~";

/// `value` as one subject token: bytes other than ASCII letters, digits,
/// `-` and `_` become `%XX`, and the empty value `%`. Distinct values give
/// distinct tokens, never `*`, `>`, `~` or one with a `.` or space.
pub fn token(value: &str) -> String {
    if value.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::Sqlite;
    use crate::testkit::NatsServer;

    #[test]
    fn tokens_are_single_distinct_and_safe() {
        assert_eq!(token("billing"), "billing");
        assert_eq!(token("a.b c*>"), "a%2Eb%20c%2A%3E");
        assert_eq!(token(""), "%");
        assert_ne!(token("%"), token(""));
        assert_eq!(token("ü"), "%C3%BC");
        let meta = Meta {
            call_id: "x".into(),
            team: "team.one".into(),
            agent_id: "a1".into(),
            severity: Some(2),
            rule_id: None,
        };
        assert_eq!(subject(&meta), "callwatch.feed.team%2Eone.a1.2.~");
        let filter = Filter {
            team: Some("team.one".into()),
            rule_id: Some("hold.permission".into()),
            ..Filter::default()
        };
        assert_eq!(
            filter_subject(&filter),
            "callwatch.feed.team%2Eone.*.*.hold%2Epermission"
        );
    }

    /// A feed over an empty store and a fresh `nats-server -js`; built on
    /// the test's runtime (the feed publishes through it).
    fn jetstream(_queue: usize) -> (Arc<dyn Feed>, (NatsServer, tempfile::TempDir)) {
        let nats = NatsServer::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Sqlite::open(dir.path()).unwrap());
        let url = nats.url();
        let feed = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(JetStream::connect(store, &[url], "test"))
        })
        .unwrap();
        (Arc::new(feed), (nats, dir))
    }

    crate::feed::contract::feed_contract!(jetstream);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_node_resumes_from_the_first_ones_cursor() {
        let (nats, dir) = (NatsServer::start().unwrap(), tempfile::tempdir().unwrap());
        let urls = [nats.url()];
        let node = |name: &'static str| {
            std::fs::create_dir_all(dir.path().join(name)).unwrap();
            let store = Arc::new(Sqlite::open(&dir.path().join(name)).unwrap());
            JetStream::connect(store, &urls, name)
        };
        let n1: Arc<dyn Feed> = Arc::new(node("n1").await.unwrap());
        let n2: Arc<dyn Feed> = Arc::new(node("n2").await.unwrap());
        let meta = |call: &str| Meta {
            call_id: call.into(),
            team: "billing".into(),
            agent_id: "a1".into(),
            severity: None,
            rule_id: None,
        };
        let start = |n: u64| pb::AlertEvent {
            event: Some(pb::alert_event::Event::Retraction(pb::Retraction {
                call_id: String::new(),
                alert_id: n,
            })),
            ..Default::default()
        };
        let mut cursors = Vec::new();
        for (i, feed) in [&n1, &n2, &n1].into_iter().enumerate() {
            let (feed, m, e) = (feed.clone(), meta(&format!("call{i}")), start(i as u64));
            cursors.push(
                tokio::task::spawn_blocking(move || feed.record(m, e))
                    .await
                    .unwrap()
                    .unwrap()
                    .cursor,
            );
        }
        // Each node's store numbers its own rows from 1; the stream orders them all.
        assert_eq!(cursors, [Cursor(1), Cursor(2), Cursor(3)]);
        let (out, mut events) = tokio::sync::mpsc::channel(4);
        let (_stop, shutdown) = watch::channel(false);
        tokio::spawn(
            n2.clone()
                .follow(Filter::default(), Start::After(cursors[0]), out, shutdown),
        );
        for want in ["call1", "call2"] {
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(event.call_id, want);
        }
    }

    /// Feed overhead per event, JetStream against the hub, in one run:
    /// `cargo test --release -p callwatch-server --lib feed::jetstream::tests::overhead -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement: run it by name"]
    async fn overhead() {
        let dir = tempfile::tempdir().unwrap();
        let hub: Arc<dyn Feed> = Arc::new(crate::feed::hub::Hub::new(
            Arc::new(Sqlite::open(dir.path()).unwrap()),
            256,
        ));
        let (js, _keep) = jetstream(256);
        for (name, feed) in [("hub", hub), ("jetstream", js)] {
            let (out, mut events) = tokio::sync::mpsc::channel(256);
            let (_stop, shutdown) = watch::channel(false);
            tokio::spawn(feed.clone().follow(Filter::default(), Start::Now, out, shutdown));
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (mut recorded, mut delivered) = (Vec::new(), Vec::new());
            for id in 0..500u64 {
                let (f, meta) = (feed.clone(), crate::feed::contract::team_meta("billing"));
                let t0 = std::time::Instant::now();
                tokio::task::spawn_blocking(move || f.record(meta, crate::feed::contract::retraction(id)))
                    .await
                    .unwrap()
                    .unwrap();
                recorded.push(t0.elapsed());
                let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                delivered.push(t0.elapsed());
                assert!(matches!(event.event, Some(pb::alert_event::Event::Retraction(r)) if r.alert_id == id));
            }
            let pct = |v: &mut Vec<Duration>, p: usize| {
                v.sort();
                v[v.len() * p / 100].as_secs_f64() * 1e3
            };
            println!(
                "{name}: record p50 {:.3} ms p95 {:.3} ms; record→follower p50 {:.3} ms p95 {:.3} ms",
                pct(&mut recorded, 50),
                pct(&mut recorded, 95),
                pct(&mut delivered, 50),
                pct(&mut delivered, 95)
            );
        }
    }
}
