//! The alert feed: every alert, retraction, claim and call start/end, in
//! one order, to every dashboard that follows it. [`Feed`] is the seam;
//! [`hub::Hub`] (in-process fan-out over the call store) is today's
//! implementation, a message bus for a cluster (NATS JetStream) the next.
//! Every implementation passes the contract suite in `contract.rs` (tests only).
//!
//! The promise to a follower: every matching event after its start, in
//! cursor order, exactly once, however slowly it reads; a slow follower
//! never slows recording.

pub mod hub;
pub mod jetstream;

#[cfg(test)]
pub(crate) mod contract;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Result;
use tokio::sync::{mpsc, watch};

use crate::cursor::Cursor;
use crate::filter::{Filter, Meta};
use crate::pb;
use crate::store::Appended;

/// Where a follower starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// With the next event recorded.
    Now,
    /// With the first event after this cursor (a reconnecting dashboard).
    After(Cursor),
    /// With the last `n` events of the whole feed (before filtering), so a
    /// new dashboard opens on recent history.
    Backlog(u32),
}

/// What a follower's events go to; an `Err` ends the stream.
pub type Out = mpsc::Sender<Result<pb::AlertEvent, tonic::Status>>;

/// A follower's work, to spawn.
pub type Following = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Feed: Send + Sync {
    /// Stores `event` (its call, agent and team filled in from `meta`),
    /// then publishes it, and returns its cursor. Recording the same event
    /// again (a retry, or a second claim of an alert) stores and publishes
    /// nothing and returns the first one's cursor, `fresh: false`.
    /// Blocking (the store): call from the pipeline's threads or
    /// `spawn_blocking`.
    fn record(&self, meta: Meta, event: pb::AlertEvent) -> Result<Appended>;

    /// Feeds `out` with the events from `start` on that match `filter`,
    /// each with its `cursor` set. Returns when `out` closes or `shutdown`
    /// turns true; a store it cannot read ends the stream with INTERNAL.
    fn follow(self: Arc<Self>, filter: Filter, start: Start, out: Out, shutdown: watch::Receiver<bool>) -> Following;

    /// Followers that fell behind the live events and caught up from the
    /// store instead, since the start.
    fn lagged(&self) -> u64;
}
