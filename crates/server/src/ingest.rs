//! `CallIngest.StreamCall`: a softphone streams one call in; the agent's
//! nudges stream back.
//!
//! Per call, three parties:
//! - the stream task (async) validates each message, decodes audio into the
//!   call's rings through an [`Inlet`] (waiting when they are full: flow
//!   control) and stamps call-control events with the call time of the audio
//!   received so far;
//! - the pipeline ([`Call`]): front end and the shared transcriber pool;
//! - the session thread (an OS thread: it blocks on the pipeline's events
//!   and on store writes) runs the rules, stores finals and alerts, publishes
//!   them to the feed and the call's watchers, and sends nudges.
//!
//! However the stream ends — `END`, a dropped connection, bad input, server
//! shutdown — the audio already accepted is finished: its finals and alerts
//! are stored and published, and the call is recorded with its scorecard.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::agent::Desks;
use crate::calls::LiveCall;
use crate::context::Shared;
use crate::feed::Feed;
use crate::filter::Meta;
use crate::{auth, pb};
use callwatch_core::alerts::{Audience, RuleOutput};
use callwatch_core::audio::Channel;
use callwatch_core::capture::network::{network_source, Encoding, Inlet};
use callwatch_core::capture::SourceFormat;
use callwatch_core::events::Event;
use callwatch_core::pipeline::{Call, CallConfig};
use callwatch_core::rules::config::ControlKind;
use callwatch_core::rules::{CallRules, Control};
use callwatch_core::time::now_unix_ms;

use pb::call_update::Update;
use pb::client_message::Message as In;
use pb::server_message::Message as Out;

/// Server messages queued for a softphone. Nudges wait for room (never
/// dropped): a softphone that stops reading stalls only its own call.
const OUTBOUND_QUEUE: usize = 64;
/// Call time between acknowledgements.
const ACK_EVERY_S: f64 = 1.0;

pub struct Ingest {
    pub shared: Arc<Shared>,
}

type Outbound = mpsc::Sender<Result<pb::ServerMessage, Status>>;

fn out(message: Out) -> Result<pb::ServerMessage, Status> {
    Ok(pb::ServerMessage { message: Some(message) })
}

/// What `CallStart` asks for, checked.
struct Setup {
    format: SourceFormat,
    encoding: Encoding,
}

fn check_start(start: &pb::CallStart) -> Result<Setup, Status> {
    let invalid = |m: String| Err(Status::invalid_argument(format!("CallStart: {m}")));
    if start.call_id.is_empty() || start.call_id.len() > 128 {
        return invalid("call_id must be 1 to 128 characters".into());
    }
    if start.agent_id.is_empty() {
        return invalid("agent_id is empty".into());
    }
    let encoding = match pb::Encoding::try_from(start.encoding) {
        Ok(pb::Encoding::Pcm16le) => Encoding::Pcm16Le,
        Ok(pb::Encoding::F32le) => Encoding::F32Le,
        Ok(pb::Encoding::Mulaw) => Encoding::MuLaw,
        Ok(pb::Encoding::Alaw) => Encoding::ALaw,
        _ => {
            return invalid(format!(
                "unknown encoding {}: use PCM16LE, F32LE, MULAW or ALAW",
                start.encoding
            ))
        }
    };
    if !(8_000..=48_000).contains(&start.sample_rate) {
        return invalid(format!("sample_rate {} Hz is outside 8000–48000 Hz", start.sample_rate));
    }
    let channels = start
        .channels
        .iter()
        .map(|&c| match pb::Channel::try_from(c) {
            Ok(pb::Channel::Agent) => Ok(Channel::Agent),
            Ok(pb::Channel::Customer) => Ok(Channel::Customer),
            Ok(pb::Channel::Mixed) => Ok(Channel::Mono),
            _ => Err(Status::invalid_argument(format!("CallStart: unknown channel role {c}"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let distinct: std::collections::HashSet<_> = channels.iter().collect();
    if channels.is_empty() || channels.len() > 2 || distinct.len() != channels.len() {
        return invalid("channels must name one or two different parties (agent, customer, or one mixed)".into());
    }
    Ok(Setup {
        format: SourceFormat {
            sample_rate: start.sample_rate,
            channels,
        },
        encoding,
    })
}

#[tonic::async_trait]
impl pb::call_ingest_server::CallIngest for Ingest {
    type StreamCallStream = ReceiverStream<Result<pb::ServerMessage, Status>>;

    async fn stream_call(
        &self,
        request: Request<Streaming<pb::ClientMessage>>,
    ) -> Result<Response<Self::StreamCallStream>, Status> {
        let who = auth::identity(&request)?;
        let mut inbound = request.into_inner();
        let start = match inbound.message().await?.and_then(|m| m.message) {
            Some(In::Start(start)) => start,
            Some(In::Audio(_)) => {
                return Err(Status::invalid_argument(
                    "audio before CallStart: the first message must be CallStart",
                ))
            }
            Some(In::Control(_)) => {
                return Err(Status::invalid_argument(
                    "call control before CallStart: the first message must be CallStart",
                ))
            }
            None => return Err(Status::invalid_argument("the stream ended before CallStart")),
        };
        let setup = check_start(&start)?;
        who.may_stream_as(&start.agent_id)?;
        let shared = self.shared.clone();
        shared.accepting()?;
        if shared.calls.len() >= shared.config.limits.max_calls {
            return Err(Status::resource_exhausted(format!(
                "{} calls are streaming, the configured limit (limits.max_calls)",
                shared.config.limits.max_calls
            )));
        }
        let session = Session::begin(&shared, &start, setup).await?;
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        tokio::spawn(session.run(shared, inbound, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// How the stream ended.
enum Ending {
    Ended,
    Dropped,
    Aborted(Status),
}

struct Session {
    call: Arc<LiveCall>,
    meta: Meta,
    inlet: callwatch_core::capture::network::PendingInlet,
    pipeline: Call,
    engine: CallRules,
    channels: usize,
}

impl Session {
    async fn begin(shared: &Arc<Shared>, start: &pb::CallStart, setup: Setup) -> Result<Self, Status> {
        let info = pb::CallInfo {
            call_id: start.call_id.clone(),
            agent_id: start.agent_id.clone(),
            team: start.team.clone(),
            state: pb::CallState::Live.into(),
            started_unix_ms: now_unix_ms(),
            ..Default::default()
        };
        let rules = shared.rules().book.clone();
        let config = CallConfig::new(&start.call_id);
        let engine = CallRules::new(rules, &start.call_id, config.vad.hangover, Vec::new());
        let call = shared
            .calls
            .insert(info.clone(), engine.scorecard().into())
            .ok_or_else(|| Status::already_exists(format!("call {:?} is already streaming", start.call_id)))?;
        let store = shared.store.clone();
        let stored = {
            let info = info.clone();
            tokio::task::spawn_blocking(move || store.begin_call(&info)).await
        };
        match stored {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                shared.calls.remove(&info.call_id);
                return Err(Status::already_exists(format!(
                    "call {:?} is already in the store: call ids are never reused",
                    start.call_id
                )));
            }
            _ => {
                shared.calls.remove(&info.call_id);
                return Err(Status::internal("cannot record the call in the store"));
            }
        }
        let channels = setup.format.channels.len();
        let (source, inlet) = network_source(setup.format, setup.encoding);
        let pipeline = Call::start(Box::new(source), shared.pool.clone(), config).map_err(|e| {
            shared.calls.remove(&info.call_id);
            Status::internal(format!("cannot start the call's pipeline: {e:#}"))
        })?;
        let meta = Meta {
            call_id: info.call_id.clone(),
            team: info.team.clone(),
            agent_id: info.agent_id.clone(),
            severity: None,
            rule_id: None,
        };
        record(
            &shared.feed,
            &meta,
            pb::alert_event::Event::CallStarted(pb::CallStarted { call: Some(info) }),
        )
        .await;
        Ok(Self {
            call,
            meta,
            inlet,
            pipeline,
            engine,
            channels,
        })
    }

    async fn run(self, shared: Arc<Shared>, mut inbound: Streaming<pb::ClientMessage>, tx: Outbound) {
        let Session {
            call,
            meta,
            inlet,
            pipeline,
            engine,
            channels,
        } = self;
        let _ = tx.send(out(Out::Accepted(call.info()))).await;
        let (controls, control_rx) = std::sync::mpsc::channel();
        let thread = {
            let (call, shared, meta, tx) = (call.clone(), shared.clone(), meta.clone(), tx.clone());
            tokio::task::spawn_blocking(move || follow(pipeline, engine, control_rx, &call, &shared, &meta, &tx))
        };
        let mut inlet = match inlet.open().await {
            Ok(inlet) => inlet,
            Err(e) => {
                let _ = tx.send(Err(Status::internal(format!("{e:#}")))).await;
                return;
            }
        };
        let limits = shared.config.limits.clone();
        let mut shutdown = shared.shutdown.clone();
        let mut acked_s = 0.0;
        let ending = loop {
            let message = tokio::select! {
                m = inbound.message() => m,
                _ = shutdown.changed() => break Ending::Aborted(Status::unavailable("the server is shutting down")),
            };
            let message = match message {
                Ok(Some(m)) => m,
                // Closed without END, or the connection went away.
                Ok(None) | Err(_) => break Ending::Dropped,
            };
            match message.message {
                Some(In::Audio(audio)) => {
                    if let Err(status) = accept_audio(&mut inlet, &audio, channels, limits.max_chunk_bytes).await {
                        break Ending::Aborted(status);
                    }
                    if inlet.received_s() - acked_s >= ACK_EVERY_S {
                        acked_s = inlet.received_s();
                        let _ = tx.send(out(Out::Ack(ack(&inlet)))).await;
                    }
                }
                Some(In::Control(c)) => match control(&c, inlet.received_s()) {
                    Ok(control) => {
                        let end = control.kind == ControlKind::End;
                        let _ = controls.send(control);
                        let _ = tx.send(out(Out::Ack(ack(&inlet)))).await;
                        if end {
                            break Ending::Ended;
                        }
                    }
                    Err(status) => break Ending::Aborted(status),
                },
                Some(In::Start(_)) => {
                    break Ending::Aborted(Status::invalid_argument(
                        "a second CallStart: one stream carries one call",
                    ))
                }
                None => break Ending::Aborted(Status::invalid_argument("an empty ClientMessage")),
            }
        };
        let received_s = inlet.received_s();
        let (gaps, repeats) = (inlet.gaps(), inlet.repeats());
        if matches!(ending, Ending::Dropped) {
            let _ = controls.send(Control {
                t_s: received_s,
                kind: ControlKind::Dropped,
                to: None,
            });
        }
        // Closing the rings ends the audio; the pipeline finishes what it has.
        drop(inlet);
        drop(controls);
        let finished = thread.await;
        let (state, reason) = match &ending {
            Ending::Ended => (pb::CallState::Ended, String::new()),
            Ending::Dropped => (pb::CallState::Dropped, "the stream closed without END".to_owned()),
            Ending::Aborted(status) => (pb::CallState::Aborted, status.message().to_owned()),
        };
        tracing::info!(call = %meta.call_id, ?state, received_s, ?gaps, ?repeats, "call stream closed");
        let ended = match finished {
            Ok(Ok(end)) => {
                let mut info = call.info();
                info.state = state.into();
                info.reason = reason;
                info.ended_unix_ms = now_unix_ms();
                info.audio_s = end.audio_s;
                info.alerts = end.alerts;
                info.score = end.scorecard.score;
                let ended = pb::CallEnded {
                    call: Some(info.clone()),
                    scorecard: Some(end.scorecard.clone()),
                };
                let store = shared.store.clone();
                let stored = {
                    let ended = ended.clone();
                    tokio::task::spawn_blocking(move || store.end_call(&info, ended.scorecard.as_ref())).await
                };
                if !matches!(stored, Ok(Ok(()))) {
                    tracing::error!(call = %meta.call_id, "cannot record the end of the call in the store");
                }
                record(&shared.feed, &meta, pb::alert_event::Event::CallEnded(ended.clone())).await;
                call.publish(Update::Scorecard(end.scorecard));
                call.publish(Update::Call(ended.call.clone().unwrap_or_default()));
                shared.desks.publish(
                    &meta.agent_id,
                    pb::agent_update::Update::Call(ended.call.clone().unwrap_or_default()),
                );
                Some(ended)
            }
            Ok(Err(e)) => {
                tracing::error!(call = %meta.call_id, "the call's session failed: {e:#}");
                None
            }
            Err(_) => {
                tracing::error!(call = %meta.call_id, "the call's session panicked");
                None
            }
        };
        shared.calls.remove(&meta.call_id);
        match (ending, ended) {
            (Ending::Aborted(status), _) => {
                let _ = tx.send(Err(status)).await;
            }
            (_, Some(ended)) => {
                let _ = tx.send(out(Out::Ended(ended))).await;
            }
            (_, None) => {
                let _ = tx
                    .send(Err(Status::internal("the call's session failed; see the server log")))
                    .await;
            }
        }
    }
}

async fn accept_audio(inlet: &mut Inlet, audio: &pb::Audio, channels: usize, max_bytes: usize) -> Result<(), Status> {
    let ch = audio.channel as usize;
    if ch >= channels {
        return Err(Status::invalid_argument(format!(
            "audio for channel {ch}, but the call has {channels} channel(s)"
        )));
    }
    if audio.data.len() > max_bytes {
        return Err(Status::invalid_argument(format!(
            "audio packet {} of channel {ch} is {} bytes, over the limit of {max_bytes} (limits.max_chunk_bytes)",
            audio.seq,
            audio.data.len()
        )));
    }
    inlet
        .push(ch, audio.seq, &audio.data)
        .await
        .map_err(|e| Status::invalid_argument(format!("audio packet {} of channel {ch}: {e}", audio.seq)))
}

fn ack(inlet: &Inlet) -> pb::Ack {
    pb::Ack {
        received_s: inlet.received_s(),
        gaps: inlet.gaps(),
        repeats: inlet.repeats(),
    }
}

fn control(c: &pb::CallControl, t_s: f64) -> Result<Control, Status> {
    use pb::call_control::Action;
    let kind = match c.action() {
        Action::Hold => ControlKind::Hold,
        Action::Unhold => ControlKind::Unhold,
        Action::Mute => ControlKind::Mute,
        Action::Unmute => ControlKind::Unmute,
        Action::Transfer => ControlKind::Transfer,
        Action::End => ControlKind::End,
        Action::Unspecified => {
            return Err(Status::invalid_argument(format!(
                "CallControl: unknown action {}",
                c.action
            )))
        }
    };
    if kind == ControlKind::Transfer && c.transfer_to.is_empty() {
        return Err(Status::invalid_argument(
            "CallControl TRANSFER needs transfer_to: the recipient's name",
        ));
    }
    Ok(Control {
        t_s,
        kind,
        to: (!c.transfer_to.is_empty()).then(|| c.transfer_to.clone()),
    })
}

/// Stores and publishes one feed event from async code.
async fn record(feed: &Arc<dyn Feed>, meta: &Meta, event: pb::alert_event::Event) {
    let (feed, meta) = (feed.clone(), meta.clone());
    let recorded = tokio::task::spawn_blocking(move || feed.record(meta, alert_event(event))).await;
    if !matches!(recorded, Ok(Ok(_))) {
        tracing::error!("cannot record a feed event in the store");
    }
}

fn alert_event(event: pb::alert_event::Event) -> pb::AlertEvent {
    pb::AlertEvent {
        at_unix_ms: now_unix_ms(),
        event: Some(event),
        ..Default::default()
    }
}

/// What the session thread leaves.
struct SessionEnd {
    audio_s: f64,
    /// Alerts raised and not retracted.
    alerts: u32,
    scorecard: pb::Scorecard,
}

/// The session thread: the pipeline's events through the rules, into the
/// store, the feed, the call's watchers and the agent's nudges.
fn follow(
    pipeline: Call,
    mut engine: CallRules,
    controls: std::sync::mpsc::Receiver<Control>,
    call: &LiveCall,
    shared: &Shared,
    meta: &Meta,
    nudges: &Outbound,
) -> anyhow::Result<SessionEnd> {
    let feed = shared.feed.as_ref();
    let mut publisher = Publisher {
        call,
        feed,
        meta,
        nudges,
        desks: &shared.desks,
        raised: HashMap::new(),
        scorecard_revision: engine.scorecard().revision(),
        speaking: false,
        held: Vec::new(),
    };
    let mut activity = Activity::default();
    for event in pipeline.events.iter() {
        for c in controls.try_iter() {
            activity.control(c.kind);
            call.publish(Update::Control(pb::ControlEvent {
                action: c.kind.name().to_owned(),
                t_s: c.t_s,
                transfer_to: c.to.clone().unwrap_or_default(),
            }));
            engine.control(c);
        }
        match &event {
            Event::Transcript(t) => {
                let revision = pb::TranscriptRevision::from(t);
                if t.is_final {
                    shared.store.add_final(&revision)?;
                }
                call.publish(Update::Transcript(revision));
            }
            Event::Voice {
                channel, speaking, t_s, ..
            } => {
                call.publish(Update::Voice(pb::VoiceActivity {
                    call_id: meta.call_id.clone(),
                    channel: pb::Channel::from(*channel).into(),
                    speaking: *speaking,
                    t_s: *t_s,
                }));
                if *channel != Channel::Customer {
                    publisher.agent_speaking(*speaking);
                }
                activity.voice(*channel, *speaking, *t_s);
            }
            Event::Tick { t_s, .. } => {
                let mut info = call.info.lock().expect("poisoned");
                info.audio_s = *t_s;
                info.activity = activity.label(*t_s).to_owned();
                info.speaking = activity.speaking.iter().map(|&c| pb::Channel::from(c) as i32).collect();
            }
        }
        for output in engine.feed(&event) {
            publisher.output(output)?;
        }
        publisher.scorecard(engine.scorecard());
    }
    let report = pipeline.join()?;
    // The stream task has closed the channel by now: every control is here.
    for c in controls.try_iter() {
        engine.control(c);
    }
    for output in engine.finish(report.audio_s) {
        publisher.output(output)?;
    }
    publisher.agent_speaking(false);
    let scorecard = pb::Scorecard::from(engine.scorecard());
    Ok(SessionEnd {
        audio_s: report.audio_s,
        alerts: publisher.raised.len() as u32,
        scorecard,
    })
}

/// What a live call is doing, for the wall of calls.
#[derive(Default)]
struct Activity {
    held: bool,
    muted: bool,
    transferring: bool,
    speaking: Vec<Channel>,
    /// Call time of the last start or end of speech.
    last_voice_s: f64,
}

/// Nobody speaking this long (off hold) is dead air on the wall.
const DEAD_AIR_S: f64 = 5.0;

impl Activity {
    fn control(&mut self, kind: ControlKind) {
        match kind {
            ControlKind::Hold => self.held = true,
            ControlKind::Unhold => self.held = false,
            ControlKind::Mute => self.muted = true,
            ControlKind::Unmute => self.muted = false,
            ControlKind::Transfer => self.transferring = true,
            ControlKind::End | ControlKind::Dropped => {}
        }
    }

    fn voice(&mut self, channel: Channel, speaking: bool, t_s: f64) {
        self.speaking.retain(|&c| c != channel);
        if speaking {
            self.speaking.push(channel);
        }
        self.last_voice_s = t_s;
    }

    fn label(&self, now_s: f64) -> &'static str {
        match self {
            Self { transferring: true, .. } => "transferring",
            Self { held: true, .. } => "on hold",
            Self { muted: true, .. } => "muted",
            Self { speaking, .. } if !speaking.is_empty() => "talking",
            _ if now_s - self.last_voice_s >= DEAD_AIR_S => "dead air",
            _ => "silent",
        }
    }
}

struct Publisher<'a> {
    call: &'a LiveCall,
    feed: &'a dyn Feed,
    desks: &'a Desks,
    meta: &'a Meta,
    nudges: &'a Outbound,
    /// Alerts raised and not retracted: id → (severity, rule, nudged).
    raised: HashMap<u64, (i32, String, bool)>,
    /// The revision of the scorecard last published.
    scorecard_revision: u64,
    /// The agent is mid-sentence: non-critical nudges wait in `held`.
    speaking: bool,
    held: Vec<pb::Alert>,
}

impl Publisher<'_> {
    /// Store, then feed, then the call's watchers, then the agent.
    fn output(&mut self, output: RuleOutput) -> anyhow::Result<()> {
        match output {
            RuleOutput::Alert(alert) => {
                let wire = pb::Alert::from(&alert);
                let nudge = alert.audience.contains(&Audience::Agent);
                let meta = Meta {
                    severity: Some(wire.severity),
                    rule_id: Some(wire.rule_id.clone()),
                    ..self.meta.clone()
                };
                self.raised
                    .insert(alert.id, (wire.severity, wire.rule_id.clone(), nudge));
                self.feed
                    .record(meta, alert_event(pb::alert_event::Event::Alert(wire.clone())))?;
                self.call.info.lock().expect("poisoned").alerts = self.raised.len() as u32;
                self.call.publish(Update::Alert(wire.clone()));
                if nudge {
                    if self.speaking && wire.severity != pb::Severity::Critical as i32 {
                        self.held.push(wire);
                    } else {
                        self.release(wire);
                    }
                }
            }
            RuleOutput::Retract { id, call_id } => {
                let Some((severity, rule_id, nudged)) = self.raised.remove(&id) else {
                    return Ok(());
                };
                let retraction = pb::Retraction {
                    call_id: call_id.to_string(),
                    alert_id: id,
                };
                let meta = Meta {
                    severity: Some(severity),
                    rule_id: Some(rule_id),
                    ..self.meta.clone()
                };
                self.feed.record(
                    meta,
                    alert_event(pb::alert_event::Event::Retraction(retraction.clone())),
                )?;
                self.call.info.lock().expect("poisoned").alerts = self.raised.len() as u32;
                self.call.publish(Update::Retraction(retraction.clone()));
                let held = self.held.len();
                self.held.retain(|a| a.id != id);
                // A held nudge was never shown: it just goes.
                if nudged && held == self.held.len() {
                    let _ = self.nudges.blocking_send(out(Out::Retraction(retraction.clone())));
                    self.desks
                        .publish(&self.meta.agent_id, pb::agent_update::Update::Retraction(retraction));
                }
            }
        }
        Ok(())
    }

    /// The agent's screens (softphone and panel) get a nudge.
    fn release(&self, nudge: pb::Alert) {
        self.desks
            .publish(&self.meta.agent_id, pb::agent_update::Update::Nudge(nudge.clone()));
        let _ = self.nudges.blocking_send(out(Out::Nudge(nudge)));
    }

    /// Nudges are not shown while the agent is mid-sentence (unless
    /// critical): the held ones go out when they stop.
    fn agent_speaking(&mut self, speaking: bool) {
        self.speaking = speaking;
        if !speaking {
            for nudge in std::mem::take(&mut self.held) {
                self.release(nudge);
            }
        }
    }

    /// Publishes the scorecard when it changed.
    fn scorecard(&mut self, card: &callwatch_core::rules::Scorecard) {
        if card.revision() == self.scorecard_revision {
            return;
        }
        self.scorecard_revision = card.revision();
        let card = pb::Scorecard::from(card);
        *self.call.scorecard.lock().expect("poisoned") = card.clone();
        self.call.publish(Update::Scorecard(card));
    }
}
