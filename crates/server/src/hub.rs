//! The alert feed's fan-out: record in the store, then publish to every
//! live subscriber whose filter matches.
//!
//! Backpressure: each subscriber has a bounded queue (`limits.subscriber_queue`).
//! Publishing never waits: a subscriber whose queue is full is cut off (its
//! queue closes) and its stream switches to catching up from the store,
//! then subscribes again. So a stalled dashboard costs the pipeline nothing
//! and still receives every event, in order, exactly once.
//!
//! Order: appending to the store and publishing happen under one lock, so
//! live events arrive in sequence order and a stream can drop anything at
//! or below the last sequence number it delivered from the store.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::sync::{mpsc, watch};

use crate::pb;
use crate::store::{FeedEntry, Meta, Store};

/// Feed entries read from the store at a time while catching up.
const CATCH_UP_BATCH: usize = 256;

/// A position in the feed, as clients see it: `c<sequence>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor(pub i64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

impl FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.strip_prefix('c')
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .map(Cursor)
            .ok_or_else(|| format!("malformed cursor {s:?}: pass an AlertEvent.cursor as received (like \"c42\")"))
    }
}

/// Which feed events a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// `None`: every team.
    pub team: Option<String>,
    pub agent_id: Option<String>,
    /// Alerts below this severity (and their retractions and claims) are left out.
    pub min_severity: i32,
    /// Only this rule's alerts; call start and end events are then left out too.
    pub rule_id: Option<String>,
}

impl Filter {
    pub fn matches(&self, m: &Meta) -> bool {
        self.team.as_ref().is_none_or(|t| *t == m.team)
            && self.agent_id.as_ref().is_none_or(|a| *a == m.agent_id)
            && m.severity.is_none_or(|s| s >= self.min_severity)
            && self.rule_id.as_ref().is_none_or(|r| m.rule_id.as_ref() == Some(r))
    }
}

struct Subscriber {
    filter: Filter,
    tx: mpsc::Sender<Arc<FeedEntry>>,
}

pub struct Feed {
    pub store: Arc<Store>,
    subscribers: Mutex<Vec<Subscriber>>,
    /// Live events a subscriber may have queued before it is switched to catch-up.
    queue: usize,
    /// Subscribers cut off for falling behind, since the start.
    lagged: AtomicU64,
}

impl Feed {
    pub fn new(store: Arc<Store>, queue: usize) -> Self {
        Self {
            store,
            subscribers: Mutex::new(Vec::new()),
            queue,
            lagged: AtomicU64::new(0),
        }
    }

    /// Subscribers cut off for falling behind (each then caught up from the store).
    pub fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }

    /// Stores `event` (its call, agent and team filled in from `meta`), then publishes it. Blocking (an fsync): call from the
    /// pipeline's threads or `spawn_blocking`.
    pub fn record(&self, meta: Meta, mut event: pb::AlertEvent) -> Result<Arc<FeedEntry>> {
        event.call_id.clone_from(&meta.call_id);
        event.agent_id.clone_from(&meta.agent_id);
        event.team.clone_from(&meta.team);
        let mut subscribers = self.subscribers.lock().expect("feed lock poisoned");
        let seq = self.store.append(&meta, &event)?;
        event.cursor = Cursor(seq).to_string();
        let entry = Arc::new(FeedEntry { seq, meta, event });
        subscribers.retain(|s| {
            if !s.filter.matches(&entry.meta) {
                return !s.tx.is_closed();
            }
            match s.tx.try_send(entry.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.lagged.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("callwatch_feed_subscribers_lagged_total").increment(1);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        metrics::gauge!("callwatch_feed_subscribers").set(subscribers.len() as f64);
        Ok(entry)
    }

    /// Briefly blocking: it may wait for a `record` in progress (one insert).
    fn subscribe(&self, filter: Filter) -> mpsc::Receiver<Arc<FeedEntry>> {
        let (tx, rx) = mpsc::channel(self.queue);
        self.subscribers
            .lock()
            .expect("feed lock poisoned")
            .push(Subscriber { filter, tx });
        rx
    }

    /// Feeds `out` with the events after `after` (from now when `None`)
    /// that match `filter`: from the store while behind, live once caught
    /// up. Returns when `out` closes or the server shuts down.
    pub async fn follow(
        self: Arc<Self>,
        filter: Filter,
        after: Option<Cursor>,
        out: mpsc::Sender<Result<pb::AlertEvent, tonic::Status>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let store = self.store.clone();
        let mut last = match after {
            Some(c) => c.0,
            None => match tokio::task::spawn_blocking(move || store.last_seq()).await {
                Ok(Ok(seq)) => seq,
                _ => return send_internal(&out).await,
            },
        };
        loop {
            // Subscribe before reading the store: whatever is recorded from
            // now on is either in the store batch or in the queue.
            let mut live = self.subscribe(filter.clone());
            loop {
                let store = self.store.clone();
                let batch = match tokio::task::spawn_blocking(move || store.feed_after(last, CATCH_UP_BATCH)).await {
                    Ok(Ok(batch)) => batch,
                    _ => return send_internal(&out).await,
                };
                for entry in &batch {
                    last = entry.seq;
                    if filter.matches(&entry.meta) && out.send(Ok(entry.event.clone())).await.is_err() {
                        return;
                    }
                }
                if batch.len() < CATCH_UP_BATCH {
                    break;
                }
            }
            loop {
                tokio::select! {
                    entry = live.recv() => match entry {
                        Some(entry) if entry.seq <= last => {}
                        Some(entry) => {
                            last = entry.seq;
                            if out.send(Ok(entry.event.clone())).await.is_err() {
                                return;
                            }
                        }
                        // Cut off for falling behind: catch up from the store.
                        None => break,
                    },
                    _ = shutdown.changed() => return,
                    _ = out.closed() => return,
                }
            }
            tracing::debug!(last, "a feed subscriber fell behind; catching up from the store");
        }
    }
}

async fn send_internal(out: &mpsc::Sender<Result<pb::AlertEvent, tonic::Status>>) {
    let _ = out
        .send(Err(tonic::Status::internal(
            "cannot read the alert feed from the store",
        )))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_named() {
        assert_eq!("c42".parse::<Cursor>(), Ok(Cursor(42)));
        assert_eq!(Cursor(7).to_string(), "c7");
        for bad in ["42", "c", "c-1", "cx", ""] {
            let err = bad.parse::<Cursor>().unwrap_err();
            assert!(err.contains("malformed cursor"), "{err}");
        }
    }

    #[test]
    fn filters_select_team_agent_severity_and_rule() {
        let alert = Meta {
            call_id: "c1".into(),
            team: "billing".into(),
            agent_id: "a1".into(),
            severity: Some(pb::Severity::Warning as i32),
            rule_id: Some("hold.permission".into()),
        };
        let call_start = Meta {
            severity: None,
            rule_id: None,
            ..alert.clone()
        };
        assert!(Filter::default().matches(&alert));
        let team = |t: &str| Filter {
            team: Some(t.into()),
            ..Filter::default()
        };
        assert!(team("billing").matches(&alert) && !team("sales").matches(&alert));
        let critical = Filter {
            min_severity: pb::Severity::Critical as i32,
            ..Filter::default()
        };
        assert!(!critical.matches(&alert) && critical.matches(&call_start));
        let rule = Filter {
            rule_id: Some("hold.permission".into()),
            ..Filter::default()
        };
        assert!(rule.matches(&alert) && !rule.matches(&call_start));
    }

    #[tokio::test]
    async fn a_stalled_subscriber_is_cut_off_and_catches_up_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let queue = 16;
        let feed = Arc::new(Feed::new(Arc::new(Store::open(dir.path()).unwrap()), queue));
        let (_stop, shutdown) = watch::channel(false);
        let (out, mut events) = mpsc::channel(1);
        tokio::spawn(feed.clone().follow(Filter::default(), Some(Cursor(0)), out, shutdown));
        let n = queue as u64 * 10;
        let recorder = feed.clone();
        // Recording never waits for the subscriber, which reads nothing yet.
        tokio::task::spawn_blocking(move || {
            for id in 0..n {
                let event = pb::AlertEvent {
                    event: Some(pb::alert_event::Event::Retraction(pb::Retraction {
                        call_id: "c1".into(),
                        alert_id: id,
                    })),
                    ..Default::default()
                };
                recorder.record(Meta::default(), event).unwrap();
            }
        })
        .await
        .unwrap();
        assert!(feed.lagged() >= 1, "the subscriber was never cut off");
        for id in 0..n {
            let event = events.recv().await.unwrap().unwrap();
            assert_eq!(event.cursor, Cursor(id as i64 + 1).to_string());
            match event.event {
                Some(pb::alert_event::Event::Retraction(r)) => assert_eq!(r.alert_id, id),
                other => panic!("{other:?}"),
            }
        }
    }
}
