//! The calls in progress: what a dashboard asks about a live call before it
//! is in the store, and the per-call fan-out of live updates for `WatchCall`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::pb;

/// Live updates a `WatchCall` stream may fall behind by before it skips to a
/// fresh snapshot (tokio's broadcast drops the oldest for a slow receiver;
/// the sender never waits).
const UPDATE_QUEUE: usize = 1024;

pub struct LiveCall {
    pub info: Mutex<pb::CallInfo>,
    pub scorecard: Mutex<pb::Scorecard>,
    pub updates: broadcast::Sender<pb::CallUpdate>,
}

impl LiveCall {
    pub fn publish(&self, update: pb::call_update::Update) {
        // No receivers is fine: nobody is watching this call.
        let _ = self.updates.send(pb::CallUpdate { update: Some(update) });
    }

    pub fn info(&self) -> pb::CallInfo {
        self.info.lock().expect("poisoned").clone()
    }
}

#[derive(Default)]
pub struct Calls {
    live: Mutex<HashMap<String, Arc<LiveCall>>>,
}

impl Calls {
    /// Registers a call; `None` if one with its id is already live.
    pub fn insert(&self, info: pb::CallInfo, scorecard: pb::Scorecard) -> Option<Arc<LiveCall>> {
        let mut live = self.live.lock().expect("poisoned");
        if live.contains_key(&info.call_id) {
            return None;
        }
        let call = Arc::new(LiveCall {
            info: Mutex::new(info.clone()),
            scorecard: Mutex::new(scorecard),
            updates: broadcast::channel(UPDATE_QUEUE).0,
        });
        live.insert(info.call_id, call.clone());
        metrics::gauge!("callwatch_live_calls").set(live.len() as f64);
        Some(call)
    }

    pub fn remove(&self, call_id: &str) {
        let mut live = self.live.lock().expect("poisoned");
        live.remove(call_id);
        metrics::gauge!("callwatch_live_calls").set(live.len() as f64);
    }

    pub fn get(&self, call_id: &str) -> Option<Arc<LiveCall>> {
        self.live.lock().expect("poisoned").get(call_id).cloned()
    }

    pub fn len(&self) -> usize {
        self.live.lock().expect("poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live calls of `team` (every team for `None`), oldest first.
    pub fn list(&self, team: Option<&str>) -> Vec<pb::CallInfo> {
        let mut calls: Vec<_> = self
            .live
            .lock()
            .expect("poisoned")
            .values()
            .map(|c| c.info())
            .filter(|i| team.is_none_or(|t| t == i.team))
            .collect();
        calls.sort_by_key(|i| i.started_unix_ms);
        calls
    }
}
