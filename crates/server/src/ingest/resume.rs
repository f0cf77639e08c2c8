//! Resuming a softphone's call after its connection broke.
//!
//! A stream that fails at the transport (a reset, a failed keepalive, a
//! network gone) leaves its call parked: the session, pipeline and reply
//! queue stay as they are and the call stays LIVE. A new stream whose
//! `CallStart.resume` names the call (same call id, agent and format)
//! within `limits.resume_s` takes it back: the softphone hears the
//! acceptance and an `Ack` with the sequence numbers to resend from, then
//! any reply the broken stream never delivered. Past `resume_s`, or at
//! shutdown, the call ends as it would have (DROPPED, with the break's
//! reason; ABORTED at shutdown). A stream closed without END or silent past
//! `idle_timeout_s` is not parked: the softphone was there and chose or
//! failed to go on. Parking is in memory: after a restart there is nothing
//! to resume (the call was closed as ABORTED) and a resume is NOT_FOUND.
//!
//! Queues: while parked, replies wait in the call's reply queue (64; the
//! session waits when it is full, stalling only this call); audio waits at
//! the softphone.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;

use super::per_token::TokenCall;
use crate::pb;
use crate::session::{Abort, CallHandle, CallSpec, Ending, Outgoing};

/// A call's replies as a stream that outlives the gRPC stream carrying
/// it: a resumed stream reads on from the same queue.
#[derive(Clone)]
pub struct Replies(Arc<Mutex<mpsc::Receiver<Outgoing>>>);

impl Replies {
    pub fn new(rx: mpsc::Receiver<Outgoing>) -> Self {
        Self(Arc::new(Mutex::new(rx)))
    }
}

impl tokio_stream::Stream for Replies {
    type Item = Outgoing;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Outgoing>> {
        self.0.lock().expect("poisoned").poll_recv(cx)
    }
}

/// A call between streams, or on one (what a stream needs to park it).
pub struct Parked {
    pub handle: CallHandle,
    pub replies: Replies,
    pub spec: CallSpec,
    /// When the call was opened: `max_call_s` counts from here.
    pub opened: Instant,
    /// The call's place among its token's (`limits.calls_per_token`).
    pub token: TokenCall,
}

/// The calls waiting to be resumed.
#[derive(Default)]
pub struct Parking {
    calls: Mutex<HashMap<String, (u64, Parked)>>,
    /// Tells a parking from a later one of the same call.
    generations: AtomicU64,
}

impl Parking {
    /// Parks a call whose stream broke (`why`). Unless resumed within
    /// `wait` it then ends as DROPPED; at shutdown, as ABORTED.
    pub fn park(self: &Arc<Self>, parked: Parked, why: String, wait: Duration) {
        let call_id = parked.spec.call_id.clone();
        let stopping = parked.handle.stopping();
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(call = %call_id, "the call's stream broke ({why}); resumable for {} s", wait.as_secs_f64());
        self.lock().insert(call_id.clone(), (generation, parked));
        let parking = self.clone();
        tokio::spawn(async move {
            let ending = tokio::select! {
                _ = tokio::time::sleep(wait) => Ending::Dropped(format!(
                    "{why}; not resumed within {} s (limits.resume_s)",
                    wait.as_secs_f64()
                )),
                _ = stopping => Ending::Aborted(Abort::ShuttingDown),
            };
            let mut calls = parking.lock();
            if calls.get(&call_id).is_some_and(|(g, _)| *g == generation) {
                let (_, parked) = calls.remove(&call_id).expect("checked above");
                drop(calls);
                if let Ending::Dropped(why) = &ending {
                    tracing::warn!(call = %call_id, "call dropped: {why}");
                }
                parked.handle.finish(ending);
            }
        });
    }

    /// Takes back the parked call `start` resumes. Another agent's call
    /// looks like no call at all (NOT_FOUND); a different format, or acked
    /// sequence numbers the server never reached, are refused and the call
    /// stays parked.
    pub fn resume(&self, start: &pb::CallStart, resume: &pb::Resume, spec: &CallSpec) -> Result<Parked, Status> {
        let mut calls = self.lock();
        let not_found = || {
            Status::not_found(format!(
                "call {:?} is not waiting to be resumed: its stream broke more than limits.resume_s ago, it ended, \
                 or the server restarted (a call live at a restart is closed as ABORTED)",
                start.call_id
            ))
        };
        let (_, parked) = calls.get(&start.call_id).ok_or_else(not_found)?;
        if parked.spec.agent_id != spec.agent_id {
            return Err(not_found());
        }
        if parked.spec.format != spec.format || parked.spec.encoding != spec.encoding {
            return Err(Status::invalid_argument(format!(
                "CallStart.resume: call {:?} was started with another sample rate, encoding or channels",
                start.call_id
            )));
        }
        let next = parked.handle.receipt().next_seq;
        let ahead = resume.acked_seq.len() > next.len() || resume.acked_seq.iter().zip(&next).any(|(a, n)| a > n);
        if ahead {
            return Err(Status::invalid_argument(format!(
                "CallStart.resume: acked_seq {:?} is past what the server received ({next:?})",
                resume.acked_seq
            )));
        }
        let (_, parked) = calls.remove(&start.call_id).expect("found above");
        tracing::info!(call = %start.call_id, next_seq = ?next, "call resumed");
        Ok(parked)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Parked)>> {
        self.calls.lock().expect("poisoned")
    }
}
