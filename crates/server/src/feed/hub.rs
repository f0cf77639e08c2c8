//! [`Feed`] in one process: record in the call store, then publish to
//! every live follower whose filter matches.
//!
//! Backpressure: each follower has a bounded queue (`limits.subscriber_queue`).
//! Publishing never waits: a follower whose queue is full is cut off (its
//! queue closes) and switches to catching up from the store, then
//! subscribes again. So a stalled dashboard costs the pipeline nothing and
//! still receives every event, in order, exactly once.
//!
//! Order: appending to the store and publishing happen under one lock, so
//! live events arrive in cursor order and a follower can drop anything at
//! or below the last cursor it delivered from the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::sync::{mpsc, watch};

use super::{Feed, Following, Out, Start};
use crate::cursor::FeedEntry;
use crate::filter::{Filter, Meta};
use crate::pb;
use crate::store::{Appended, CallStore};

/// Feed entries read from the store at a time while catching up.
const CATCH_UP_BATCH: usize = 256;

struct Subscriber {
    filter: Filter,
    tx: mpsc::Sender<Arc<FeedEntry>>,
}

pub struct Hub {
    store: Arc<dyn CallStore>,
    subscribers: Mutex<Vec<Subscriber>>,
    /// Live events a follower may have queued before it is switched to catch-up.
    queue: usize,
    /// Followers cut off for falling behind, since the start.
    lagged: AtomicU64,
}

impl Hub {
    pub fn new(store: Arc<dyn CallStore>, queue: usize) -> Self {
        Self {
            store,
            subscribers: Mutex::new(Vec::new()),
            queue,
            lagged: AtomicU64::new(0),
        }
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

    /// Runs store work off the async runtime.
    async fn in_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn CallStore) -> Result<T> + Send + 'static,
    ) -> Option<T> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                tracing::error!("cannot read the alert feed from the store: {e:#}");
                None
            }
            Err(_) => None,
        }
    }

    async fn run(self: Arc<Self>, filter: Filter, start: Start, out: Out, mut shutdown: watch::Receiver<bool>) {
        let start = match start {
            Start::After(c) => Some(c),
            Start::Now => self.in_store(|s| s.last()).await,
            Start::Backlog(n) => self.in_store(move |s| s.before_last(n)).await,
        };
        let Some(mut last) = start else {
            return send_internal(&out).await;
        };
        loop {
            // Subscribe before reading the store: whatever is recorded from
            // now on is either in the store batch or in the queue.
            let mut live = self.subscribe(filter.clone());
            loop {
                let after = last;
                let Some(batch) = self.in_store(move |s| s.feed_after(after, CATCH_UP_BATCH)).await else {
                    return send_internal(&out).await;
                };
                for entry in &batch {
                    last = entry.cursor;
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
                        Some(entry) if entry.cursor <= last => {}
                        Some(entry) => {
                            last = entry.cursor;
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
            tracing::debug!(%last, "a feed follower fell behind; catching up from the store");
        }
    }
}

impl Feed for Hub {
    fn record(&self, meta: Meta, mut event: pb::AlertEvent) -> Result<Appended> {
        event.call_id.clone_from(&meta.call_id);
        event.agent_id.clone_from(&meta.agent_id);
        event.team.clone_from(&meta.team);
        let mut subscribers = self.subscribers.lock().expect("feed lock poisoned");
        let appended = self.store.append(&meta, &event)?;
        if !appended.fresh {
            return Ok(appended);
        }
        event.cursor = appended.cursor.to_string();
        let entry = Arc::new(FeedEntry {
            cursor: appended.cursor,
            meta,
            event,
        });
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
        Ok(appended)
    }

    fn follow(self: Arc<Self>, filter: Filter, start: Start, out: Out, shutdown: watch::Receiver<bool>) -> Following {
        Box::pin(self.run(filter, start, out, shutdown))
    }

    fn lagged(&self) -> u64 {
        self.lagged.load(Ordering::Relaxed)
    }
}

async fn send_internal(out: &Out) {
    let _ = out
        .send(Err(tonic::Status::internal(
            "cannot read the alert feed from the store",
        )))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::Sqlite;

    fn hub(queue: usize) -> (Arc<dyn Feed>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Sqlite::open(dir.path()).unwrap());
        (Arc::new(Hub::new(store, queue)), dir)
    }

    crate::feed::contract::feed_contract!(hub);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_follower_is_cut_off_rather_than_waited_for() {
        let (feed, _dir) = hub(crate::feed::contract::QUEUE);
        crate::feed::contract::a_stalled_follower_gets_every_event_in_order_once(feed.clone()).await;
        assert!(feed.lagged() >= 1, "the follower was never cut off");
    }
}
