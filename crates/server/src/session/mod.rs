//! Call sessions: one per call, whatever carries its audio.
//!
//! An ingest adapter (the gRPC softphone today; telephony gateways next)
//! turns its transport into this API and back:
//! - [`open`] a call with a [`CallSpec`] (who, team, audio format, call id):
//!   a [`CallHandle`] and the receiver of what goes back ([`Outgoing`]), or
//!   a [`Refusal`];
//! - feed it audio ([`CallHandle::audio`]), call-control events
//!   ([`CallHandle::control`]) and its end ([`CallHandle::finish`];
//!   dropping the handle is a dropped call);
//! - forward each [`Outgoing`] to the far end: an acceptance, acks, nudges,
//!   retractions, and as the last message the call's end (or why it was
//!   aborted). The receiver closes after it.
//!
//! Behind the handle, per call: the pipeline (front end and the shared
//! transcriber pool) and the session thread, a dedicated OS thread that runs
//! the rules and publishes (see [`publish`]). However the call ends, the
//! audio already accepted is finished: its finals and alerts are stored and
//! published and the call is recorded with its scorecard; only then is its
//! slot (see [`crate::slots`]) free again.
//!
//! Queues: audio waits for room in the call's rings (flow control back to
//! the adapter); [`Outgoing`] messages wait for room in a queue of
//! `REPLY_QUEUE` (nothing is dropped: an adapter that stops reading stalls
//! only its own call).

pub mod activity;
pub mod nudge;
pub mod publish;
mod run;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::context::Shared;
use crate::filter::Meta;
use crate::pb;
use crate::transcript_filter;
use activity::Activity;
use callwatch_core::capture::network::{network_source, Encoding, Inlet};
use callwatch_core::capture::SourceFormat;
use callwatch_core::pipeline::{Call, CallConfig};
use callwatch_core::rules::config::ControlKind;
use callwatch_core::rules::{CallRules, Control};
use callwatch_core::time::now_unix_ms;

use crate::slots::Full;
pub use crate::slots::{Sessions, Slot};
pub use crate::transcript_filter::{CallFilter, Redaction, TranscriptFilter, Verbatim};

/// Messages queued for the adapter (see the module's queue policy).
const REPLY_QUEUE: usize = 64;
/// Call time between acknowledgements of audio.
const ACK_EVERY_S: f64 = 1.0;

/// A call as an adapter opens it, checked by the adapter.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub call_id: String,
    pub agent_id: String,
    pub team: String,
    pub format: SourceFormat,
    pub encoding: Encoding,
}

/// Why a call was not opened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("{0} calls are streaming, the configured limit (limits.max_calls)")]
    Busy(usize),
    #[error("agent {0:?} already streams {1} call(s), the configured limit (limits.calls_per_agent)")]
    AgentBusy(String, usize),
    #[error("call {0:?} is already streaming")]
    Live(String),
    #[error("call {0:?} is already in the store: call ids are never reused")]
    Stored(String),
    /// The store cannot be written (see `store::watched`).
    #[error("the call store cannot be written: {0}")]
    StoreFailed(String),
    #[error("{0}")]
    Internal(String),
}

/// Why an adapter stopped a call before its end.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Abort {
    #[error("{0}")]
    BadInput(String),
    /// A message over a size limit.
    #[error("{0}")]
    TooLarge(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The call's own pipeline failed (a panic in its front end); other
    /// calls go on.
    #[error("{0}")]
    Fault(String),
    /// The store cannot be written: the call is ended at once, and its
    /// end recorded when the store works again.
    #[error("the call store cannot be written; the call was ended: {0}")]
    StoreFailed(String),
}

/// How a call's stream ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// The far end ended the call.
    Ended,
    /// The connection went away without an end, or went silent (a
    /// timeout); why.
    Dropped(String),
    Aborted(Abort),
}

/// What the session has received so far, for acknowledgements.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Receipt {
    /// Call time of the audio received: the furthest channel.
    pub received_s: f64,
    /// Per channel: packets missing, packets repeated.
    pub gaps: Vec<u64>,
    pub repeats: Vec<u64>,
    /// Per channel: the sequence number expected next.
    pub next_seq: Vec<u64>,
}

/// What goes back to the far end, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// Always first.
    Accepted(pb::CallInfo),
    Ack(Receipt),
    Nudge(pb::Alert),
    Retraction(pb::Retraction),
    /// Last: the call is stored.
    Ended(pb::CallEnded),
    /// Last: the call was aborted; what it had is stored.
    Aborted(Abort),
    /// Last: the session failed (see the server log).
    Failed,
}

enum Input {
    Control(Control),
    End(Ending),
}

/// An adapter's side of one open call.
pub struct CallHandle {
    info: pb::CallInfo,
    /// `None` once the call is finished: dropping it ends the audio.
    inlet: Option<Inlet>,
    channels: usize,
    max_chunk_bytes: usize,
    inputs: std::sync::mpsc::Sender<Input>,
    replies: mpsc::Sender<Outgoing>,
    acked_s: f64,
    shutdown: watch::Receiver<bool>,
}

/// Opens a call: takes a live-call slot first, then registers the call,
/// records it in the store, starts its pipeline and session thread.
pub async fn open(shared: &Arc<Shared>, spec: CallSpec) -> Result<(CallHandle, mpsc::Receiver<Outgoing>), Refusal> {
    if *shared.shutdown.borrow() {
        return Err(Refusal::ShuttingDown);
    }
    let limits = &shared.config.limits;
    let slot = shared.sessions.slot(&spec.agent_id).map_err(|full| match full {
        Full::Calls => Refusal::Busy(limits.max_calls),
        Full::Agent => Refusal::AgentBusy(spec.agent_id.clone(), limits.calls_per_agent),
    })?;
    let info = pb::CallInfo {
        call_id: spec.call_id.clone(),
        agent_id: spec.agent_id.clone(),
        team: spec.team.clone(),
        state: pb::CallState::Live.into(),
        started_unix_ms: now_unix_ms(),
        ..Default::default()
    };
    let rules = shared.rules().book.clone();
    let config = CallConfig::new(&spec.call_id);
    let engine = CallRules::new(rules.clone(), &spec.call_id, config.vad.hangover, Vec::new());
    let filter = shared.sessions.filter().for_call();
    let call = shared
        .calls
        .insert(
            info.clone(),
            transcript_filter::scorecard(&*filter, engine.scorecard().into()),
        )
        .ok_or_else(|| Refusal::Live(spec.call_id.clone()))?;
    // From here on a refusal takes the call off the wall again.
    let unlist = |refusal: Refusal| {
        shared.calls.remove(&spec.call_id);
        refusal
    };
    let store = shared.store.clone();
    let stored = {
        let info = info.clone();
        tokio::task::spawn_blocking(move || store.begin_call(&info)).await
    };
    match stored {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Err(unlist(Refusal::Stored(spec.call_id.clone()))),
        Ok(Err(e)) => return Err(unlist(Refusal::StoreFailed(format!("{e:#}")))),
        Err(_) => return Err(unlist(Refusal::Internal("cannot record the call in the store".into()))),
    }
    let (source, inlet) = network_source(spec.format.clone(), spec.encoding);
    let inlet = inlet.max_gap(limits.max_gap_ms as f64 / 1000.0);
    let pipeline = Call::start(Box::new(source), shared.pool.clone(), config)
        .map_err(|e| unlist(Refusal::Internal(format!("cannot start the call's pipeline: {e:#}"))))?;
    // The pipeline has started its source: the inlet opens at once.
    let inlet = inlet
        .open()
        .await
        .map_err(|e| unlist(Refusal::Internal(format!("{e:#}"))))?;
    let (inputs, inputs_rx) = std::sync::mpsc::channel();
    let (replies, replies_rx) = mpsc::channel(REPLY_QUEUE);
    replies
        .try_send(Outgoing::Accepted(info.clone()))
        .expect("a new queue has room");
    let session = run::Session {
        shared: shared.clone(),
        call,
        meta: Meta {
            call_id: info.call_id.clone(),
            team: info.team.clone(),
            agent_id: info.agent_id.clone(),
            severity: None,
            rule_id: None,
        },
        pipeline,
        engine,
        activity: Activity::new(activity::dead_air_s(&rules)),
        filter,
        inputs: inputs_rx,
        replies: replies.clone(),
        slot,
    };
    shared
        .sessions
        .spawn(&spec.call_id, move || session.run())
        .map_err(|e| {
            unlist(Refusal::Internal(format!(
                "cannot start the call's session thread: {e}"
            )))
        })?;
    let handle = CallHandle {
        info,
        inlet: Some(inlet),
        channels: spec.format.channels.len(),
        max_chunk_bytes: shared.config.limits.max_chunk_bytes,
        inputs,
        replies,
        acked_s: 0.0,
        shutdown: shared.shutdown.clone(),
    };
    Ok((handle, replies_rx))
}

impl CallHandle {
    /// The call as accepted.
    pub fn info(&self) -> &pb::CallInfo {
        &self.info
    }

    fn inlet(&self) -> &Inlet {
        self.inlet.as_ref().expect("the inlet lives until the call is finished")
    }

    /// What has been received so far.
    pub fn receipt(&self) -> Receipt {
        let inlet = self.inlet();
        Receipt {
            received_s: inlet.received_s(),
            gaps: inlet.gaps(),
            repeats: inlet.repeats(),
            next_seq: inlet.next_seq(),
        }
    }

    /// The call continues on a new stream (its first broke): the far end
    /// hears the acceptance again, then where to resend its audio from.
    /// Replies the old stream never delivered come after these.
    pub async fn resumed(&mut self) {
        let _ = self.replies.send(Outgoing::Accepted(self.info.clone())).await;
        self.ack().await;
    }

    /// Packet `seq` of channel `channel` (an index into the spec's
    /// channels), encoded as the spec says. Waits while the call's rings are
    /// full. Acknowledged every `ACK_EVERY_S` of call time.
    pub async fn audio(&mut self, channel: usize, seq: u64, data: &[u8]) -> Result<(), Abort> {
        let channels = self.channels;
        if channel >= channels {
            return Err(Abort::BadInput(format!(
                "audio for channel {channel}, but the call has {channels} channel(s)"
            )));
        }
        if data.len() > self.max_chunk_bytes {
            return Err(Abort::TooLarge(format!(
                "audio packet {seq} of channel {channel} is {} bytes, over the limit of {} (limits.max_chunk_bytes)",
                data.len(),
                self.max_chunk_bytes
            )));
        }
        let inlet = self.inlet.as_mut().expect("the inlet lives until the call is finished");
        inlet
            .push(channel, seq, data)
            .await
            .map_err(|e| Abort::BadInput(format!("audio packet {seq} of channel {channel}: {e}")))?;
        if inlet.received_s() - self.acked_s >= ACK_EVERY_S {
            self.acked_s = inlet.received_s();
            self.ack().await;
        }
        Ok(())
    }

    /// A call-control event, stamped with the call time of the audio
    /// received so far, then acknowledged.
    pub async fn control(&mut self, kind: ControlKind, to: Option<String>) {
        let t_s = self.inlet().received_s();
        // A send fails only once the session has failed; its end says so.
        let _ = self.inputs.send(Input::Control(Control { t_s, kind, to }));
        self.ack().await;
    }

    // `&mut`: the inlet is not `Sync`, so a shared borrow would make the
    // adapter's task not `Send`.
    async fn ack(&mut self) {
        let _ = self.replies.send(Outgoing::Ack(self.receipt())).await;
    }

    /// Resolves when the server starts shutting down: the adapter then
    /// finishes the call with [`Abort::ShuttingDown`]. Owned, so an adapter
    /// can race it against feeding the handle (which may be waiting for
    /// room in the rings).
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut shutdown = self.shutdown.clone();
        async move {
            if shutdown.wait_for(|stop| *stop).await.is_err() {
                // The server is gone without a shutdown: never.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Ends the call's audio. The session finishes what it has, then sends
    /// the last [`Outgoing`].
    pub fn finish(mut self, ending: Ending) {
        self.close(ending);
    }

    fn close(&mut self, ending: Ending) {
        let Some(inlet) = self.inlet.take() else { return };
        let received_s = inlet.received_s();
        tracing::info!(
            call = %self.info.call_id,
            ?ending,
            received_s,
            gaps = ?inlet.gaps(),
            repeats = ?inlet.repeats(),
            "call stream closed"
        );
        if matches!(ending, Ending::Dropped(_)) {
            let _ = self.inputs.send(Input::Control(Control {
                t_s: received_s,
                kind: ControlKind::Dropped,
                to: None,
            }));
        }
        let _ = self.inputs.send(Input::End(ending));
        // Closing the rings ends the audio; the pipeline finishes what it has.
        drop(inlet);
    }
}

impl Drop for CallHandle {
    /// A handle let go without [`CallHandle::finish`] is a dropped call.
    fn drop(&mut self) {
        self.close(Ending::Dropped("the adapter let the call go without an end".into()));
    }
}
