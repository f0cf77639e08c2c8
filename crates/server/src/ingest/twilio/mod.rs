//! Twilio Media Streams (`<Connect><Stream>` / `<Start><Stream>`): a
//! WebSocket at `/ingest/twilio` on the serve port, configured by
//! `[gateways.twilio]`.
//!
//! - The upgrade is authenticated with `X-Twilio-Signature` (see
//!   [`signature`]) over `public_url`: a missing or wrong signature is
//!   403 before any audio, unless `verify_signature = false`.
//! - `start` opens the call session: `callSid` is the call id, the
//!   `agent` custom parameter the agent. With `[[agents]]` configured the
//!   agent must be listed and its configured team is the call's, whatever
//!   the `team` parameter says (Twilio forwards what the TwiML author
//!   wrote); without, the `team` parameter is taken, bounded.
//! - `media` is the audio of its track (`inbound` = customer and
//!   `outbound` = agent by default); `stop` ends the call; `mark` and
//!   `dtmf` are accepted and not used. A socket that closes without
//!   `stop` is a dropped call.
//! - A protocol error (malformed JSON, unknown event, wrong media format,
//!   `media` before `start`, an oversize or binary frame) ends this call
//!   with a close frame naming it; audio already accepted is finished and
//!   stored, as for the gRPC softphone.
//!
//! Twilio has no channel for anything but audio back, so the session's
//! replies are drained here, not sent: nudges reach the agent through the
//! agent desk. The socket's close frame tells how the call ended.

pub mod signature;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use axum::extract::ws::{close_code, CloseFrame, Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Uri};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::agents::MAX_TEAM;
use crate::context::Shared;
use crate::session::{self, Abort, CallHandle, CallSpec, Ending, Outgoing, Refusal};
use callwatch_core::audio::Channel;
use callwatch_core::capture::network::Encoding;
use callwatch_core::capture::SourceFormat;
use wire::{Message, Tracks};

/// The endpoint's path on the serve port.
pub const PATH: &str = "/ingest/twilio";

/// `[gateways.twilio]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    /// The account's auth token (the HMAC key of Twilio's signatures).
    #[serde(default)]
    pub auth_token: String,
    /// The URL given to Twilio in the `<Stream url>`, e.g.
    /// `wss://calls.example.com/ingest/twilio` (a proxy may terminate TLS
    /// and rewrite the host: Twilio signs what it was given).
    #[serde(default)]
    pub public_url: String,
    #[serde(default = "yes")]
    pub verify_signature: bool,
    /// The party on the `inbound` track (the caller, to Twilio).
    #[serde(default = "customer")]
    pub inbound: Party,
    /// The party on the `outbound` track.
    #[serde(default = "agent")]
    pub outbound: Party,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Party {
    Agent,
    Customer,
}

fn yes() -> bool {
    true
}
fn customer() -> Party {
    Party::Customer
}
fn agent() -> Party {
    Party::Agent
}

impl Party {
    fn channel(self) -> Channel {
        match self {
            Self::Agent => Channel::Agent,
            Self::Customer => Channel::Customer,
        }
    }
}

impl TwilioConfig {
    pub fn check(&self) -> Result<()> {
        if self.verify_signature {
            if self.auth_token.is_empty() {
                bail!("bad configuration: gateways.twilio.auth_token is empty (or set verify_signature = false)");
            }
            if !(self.public_url.starts_with("wss://") || self.public_url.starts_with("ws://")) {
                bail!("bad configuration: gateways.twilio.public_url must be the wss:// URL given to Twilio");
            }
        }
        if self.inbound == self.outbound {
            bail!("bad configuration: gateways.twilio.inbound and outbound must be different parties");
        }
        Ok(())
    }

    fn tracks(&self) -> Tracks {
        Tracks {
            inbound: self.inbound.channel(),
            outbound: self.outbound.channel(),
        }
    }
}

/// The WebSocket routes, for the upgrade-capable connections of the serve
/// port (see [`crate::listener`]).
pub fn routes(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route(PATH, axum::routing::get(upgrade))
        .with_state(shared)
}

/// Longest text message: a `media` message carrying the largest audio
/// packet the limits allow, base64 and JSON around it.
fn message_limit(shared: &Shared) -> usize {
    shared.config.limits.max_chunk_bytes * 4 / 3 + 1024
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, format!("{why}\n")).into_response()
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Some(config) = shared.config.gateways.twilio.clone() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "Twilio Media Streams are not enabled: add [gateways.twilio] to the configuration",
        );
    };
    if config.verify_signature {
        let url = signature::signed_url(&config.public_url, uri.query());
        let given = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok());
        match given {
            None => return refuse(StatusCode::FORBIDDEN, "no X-Twilio-Signature"),
            Some(s) if !signature::verify(&config.auth_token, &url, s) => {
                tracing::warn!(%url, "Twilio stream refused: X-Twilio-Signature does not match");
                return refuse(
                    StatusCode::FORBIDDEN,
                    "X-Twilio-Signature does not match: check gateways.twilio.auth_token and public_url",
                );
            }
            Some(_) => {}
        }
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let limit = message_limit(&shared);
    // The socket's own limit is above ours, so an oversize message is read
    // and answered with a reason instead of a bare disconnect.
    ws.max_message_size(2 * limit)
        .max_frame_size(2 * limit)
        .on_upgrade(move |socket| serve(shared, config, socket, limit))
}

/// Why a stream ends early: the close code and reason the sender sees.
struct Violation(u16, String);

fn violation(code: u16) -> impl Fn(String) -> Violation {
    move |why| Violation(code, why)
}

async fn serve(shared: Arc<Shared>, config: TwilioConfig, mut socket: WebSocket, limit: usize) {
    let (call, stream) = match open(&shared, &config, &mut socket, limit).await {
        Ok(opened) => opened,
        Err(Violation(code, why)) => {
            tracing::info!(reason = %why, "Twilio stream refused");
            return close(socket, code, &why).await;
        }
    };
    let limits = &shared.config.limits;
    let timeouts = Timeouts {
        idle: Duration::from_secs_f64(limits.idle_timeout_s),
        call: Duration::from_secs_f64(limits.max_call_s),
    };
    feed(call, stream, socket, limit, timeouts).await;
}

/// When a call whose far end stopped sending ends (Twilio sends media
/// continuously, silence included).
#[derive(Clone, Copy)]
struct Timeouts {
    /// No media for this long: the far end is gone.
    idle: Duration,
    /// The longest call (`limits.max_call_s`).
    call: Duration,
}

/// Reads up to `start`, checks it and opens the session; the replies are
/// drained by a task that reports how the call ended.
async fn open(
    shared: &Arc<Shared>,
    config: &TwilioConfig,
    socket: &mut WebSocket,
    limit: usize,
) -> Result<(Opened, wire::Stream), Violation> {
    let start = loop {
        match next(socket, limit).await? {
            None => return Err(Violation(close_code::NORMAL, "closed before start".into())),
            Some((Message::Start { start }, _)) => break start,
            Some((Message::Connected | Message::Mark | Message::Dtmf, _)) => {}
            Some((Message::Media { .. }, _)) => {
                return Err(Violation(close_code::PROTOCOL, "media before start".into()))
            }
            Some((Message::Stop, _)) => return Err(Violation(close_code::PROTOCOL, "stop before start".into())),
        }
    };
    let (opened, stream) = wire::open(&start, config.tracks()).map_err(violation(close_code::UNSUPPORTED))?;
    let roster = &shared.agents;
    if roster.configured() && !opened.claimed_team.is_empty() {
        tracing::debug!(call = %opened.call_id, claimed = %opened.claimed_team, "the team parameter is not used: [[agents]] decides");
    }
    // The configured team wins: Twilio forwards whatever the TwiML says.
    let claimed = if roster.configured() {
        ""
    } else {
        opened.claimed_team.as_str()
    };
    if claimed.len() > MAX_TEAM {
        return Err(Violation(
            close_code::POLICY,
            format!(
                "the team parameter is {} bytes, over the limit of {MAX_TEAM}",
                claimed.len()
            ),
        ));
    }
    let team = roster
        .team_of(&opened.agent_id, claimed)
        .map_err(|status| Violation(close_code::POLICY, status.message().to_owned()))?;
    let spec = CallSpec {
        call_id: opened.call_id,
        agent_id: opened.agent_id,
        team,
        format: SourceFormat {
            sample_rate: wire::SAMPLE_RATE,
            channels: opened.channels,
        },
        encoding: Encoding::MuLaw,
    };
    let (handle, replies) = session::open(shared, spec).await.map_err(|refusal| {
        let code = match refusal {
            Refusal::ShuttingDown | Refusal::Busy(_) | Refusal::AgentBusy(..) | Refusal::StoreFailed(_) => {
                close_code::AGAIN
            }
            Refusal::Live(_) | Refusal::Stored(_) => close_code::POLICY,
            Refusal::Internal(_) => close_code::ERROR,
        };
        Violation(code, refusal.to_string())
    })?;
    let (told, outcome) = oneshot::channel();
    tokio::spawn(drain(replies, told));
    Ok((Opened { handle, outcome }, stream))
}

/// An open call: the session's handle and how it ended, once it has.
struct Opened {
    handle: CallHandle,
    outcome: oneshot::Receiver<Violation>,
}

/// Consumes the session's replies (the queue must not fill: the session
/// waits on it); the last one says how the call ended.
async fn drain(mut replies: mpsc::Receiver<Outgoing>, told: oneshot::Sender<Violation>) {
    let mut last = Violation(close_code::ERROR, "the call's session ended without a word".into());
    while let Some(reply) = replies.recv().await {
        last = match reply {
            Outgoing::Ended(_) => Violation(close_code::NORMAL, "call ended".into()),
            Outgoing::Aborted(why @ Abort::BadInput(_)) => Violation(close_code::PROTOCOL, why.to_string()),
            Outgoing::Aborted(why @ Abort::TooLarge(_)) => Violation(close_code::SIZE, why.to_string()),
            Outgoing::Aborted(why @ Abort::StoreFailed(_)) => Violation(close_code::AGAIN, why.to_string()),
            Outgoing::Aborted(why @ Abort::ShuttingDown) => Violation(close_code::AWAY, why.to_string()),
            Outgoing::Aborted(why @ Abort::Fault(_)) => Violation(close_code::ERROR, why.to_string()),
            Outgoing::Failed => Violation(
                close_code::ERROR,
                "the call's session failed; see the server log".into(),
            ),
            Outgoing::Accepted(_) | Outgoing::Ack(_) | Outgoing::Nudge(_) | Outgoing::Retraction(_) => continue,
        };
    }
    let _ = told.send(last);
}

/// Feeds the call until `stop`, a protocol error, the socket's end or
/// shutdown; then closes the socket with how the call ended.
async fn feed(call: Opened, mut stream: wire::Stream, mut socket: WebSocket, limit: usize, timeouts: Timeouts) {
    let Opened { mut handle, outcome } = call;
    let stopping = handle.stopping();
    let mut timing = FrameTiming::default();
    let ending = tokio::select! {
        ending = pump(&mut handle, &mut stream, &mut socket, limit, timeouts, &mut timing) => ending,
        _ = stopping => Ending::Aborted(Abort::ShuttingDown),
    };
    timing.report(&handle.info().call_id);
    handle.finish(ending);
    let Violation(code, why) = outcome.await.unwrap_or(Violation(
        close_code::ERROR,
        "the call's session failed; see the server log".into(),
    ));
    // A socket already gone fails the close at once; one that went quiet
    // (a timeout) is told why.
    close(socket, code, &why).await;
}

async fn pump(
    call: &mut CallHandle,
    stream: &mut wire::Stream,
    socket: &mut WebSocket,
    limit: usize,
    timeouts: Timeouts,
    timing: &mut FrameTiming,
) -> Ending {
    let opened = tokio::time::Instant::now();
    let mut heard = opened;
    loop {
        let (idle_at, over_at) = (heard + timeouts.idle, opened + timeouts.call);
        let (message, arrived) = match tokio::time::timeout_at(idle_at.min(over_at), next(socket, limit)).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return Ending::Dropped("the socket closed without stop".into()),
            Ok(Err(Violation(_, why))) => return Ending::Aborted(Abort::BadInput(why)),
            Err(_) if over_at <= idle_at => {
                return Ending::Dropped(format!(
                    "the call lasted {} s, the limit (limits.max_call_s)",
                    timeouts.call.as_secs_f64()
                ))
            }
            Err(_) => {
                return Ending::Dropped(format!(
                    "no media for {} s (limits.idle_timeout_s)",
                    timeouts.idle.as_secs_f64()
                ))
            }
        };
        if matches!(message, Message::Media { .. }) {
            heard = tokio::time::Instant::now();
        }
        match message {
            Message::Media { media } => {
                let packets = match stream.media(&media) {
                    Ok(p) => p,
                    Err(why) => return Ending::Aborted(Abort::BadInput(why)),
                };
                for p in packets {
                    if let Err(why) = call.audio(p.channel, p.seq, &p.data).await {
                        return Ending::Aborted(why);
                    }
                }
                timing.record(arrived.elapsed());
            }
            Message::Stop => return Ending::Ended,
            Message::Mark | Message::Dtmf => {}
            Message::Start { .. } => {
                return Ending::Aborted(Abort::BadInput("a second start: one stream carries one call".into()))
            }
            Message::Connected => return Ending::Aborted(Abort::BadInput("connected after start".into())),
        }
    }
}

/// The next Twilio message and when it arrived; `None` when the socket
/// closed or broke.
async fn next(socket: &mut WebSocket, limit: usize) -> Result<Option<(Message, Instant)>, Violation> {
    loop {
        let frame = match socket.recv().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) if is_capacity(&e) => {
                return Err(Violation(
                    close_code::SIZE,
                    format!("a message over the limit of {limit} bytes"),
                ))
            }
            Some(Err(_)) | None => return Ok(None),
        };
        let arrived = Instant::now();
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Binary(_) => {
                return Err(Violation(
                    close_code::UNSUPPORTED,
                    "a binary frame: Media Streams messages are JSON text".into(),
                ))
            }
            Frame::Ping(_) | Frame::Pong(_) => continue,
            Frame::Close(_) => return Ok(None),
        };
        if text.len() > limit {
            return Err(Violation(
                close_code::SIZE,
                format!("a message of {} bytes, over the limit of {limit}", text.len()),
            ));
        }
        return wire::parse(&text)
            .map(|m| Some((m, arrived)))
            .map_err(violation(close_code::INVALID));
    }
}

fn is_capacity(e: &axum::Error) -> bool {
    // tungstenite's "Space limit exceeded" is only visible as text here.
    let text = format!("{e:#}");
    text.contains("Space limit exceeded") || text.contains("too long") || text.contains("Message too big")
}

async fn close(mut socket: WebSocket, code: u16, why: &str) {
    // A close reason is at most 123 bytes.
    let mut end = why.len().min(123);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: why[..end].into(),
    };
    let _ = socket.send(Frame::Close(Some(frame))).await;
    // Give the sender a moment to read the close and answer it.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}

/// Time from a `media` message's arrival to its audio in the call's rings.
#[derive(Default)]
struct FrameTiming {
    frames: u64,
    total: Duration,
    max: Duration,
}

impl FrameTiming {
    fn record(&mut self, took: Duration) {
        self.frames += 1;
        self.total += took;
        self.max = self.max.max(took);
        metrics::histogram!("callwatch_gateway_frame_to_ring_seconds", "protocol" => "twilio")
            .record(took.as_secs_f64());
    }

    fn report(&self, call_id: &str) {
        let mean_us = self.total.as_micros() as u64 / self.frames.max(1);
        tracing::info!(
            call = %call_id,
            frames = self.frames,
            mean_us,
            max_us = self.max.as_micros() as u64,
            "Twilio stream: frame arrival to ring"
        );
    }
}
