//! The clients in the binary: `callwatch softphone` streams a recording as a
//! softphone would, `callwatch watch` follows the supervisor's alert feed.
//! Both speak only the public API, as any integrator would; so does
//! `callwatch audit` ([`audit`]).

pub mod audit;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel as GrpcChannel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

use callwatch_core::alerts::{Alert, RuleOutput};
use callwatch_core::audio::Recording;
use callwatch_core::rules::config::ControlKind;
use callwatch_core::rules::{Control, Scorecard};
use callwatch_proto::pb;

pub mod twilio;

/// Where and how to reach the server.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `http://host:port`, or `https://…` for a TLS server.
    pub server: String,
    pub token: String,
    /// CA certificate (PEM) to trust for `https://`, for a private CA.
    pub ca: Option<PathBuf>,
    /// This client's certificate and key, for a server that asks for one
    /// (mutual TLS).
    pub identity: Option<ClientIdentity>,
}

/// A client certificate chain and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Authed = InterceptedService<GrpcChannel, Bearer>;

impl Connection {
    pub async fn channel(&self) -> Result<(GrpcChannel, Bearer)> {
        let mut endpoint = Endpoint::from_shared(self.server.clone())
            .with_context(|| format!("{:?} is not a server URL like http://127.0.0.1:50051", self.server))?
            .connect_timeout(Duration::from_secs(5));
        if self.identity.is_some() && !self.server.starts_with("https://") {
            anyhow::bail!("a client certificate is for an https:// server, not {}", self.server);
        }
        if self.server.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_enabled_roots();
            if let Some(ca) = &self.ca {
                let pem =
                    std::fs::read(ca).with_context(|| format!("{}: cannot read the CA certificate", ca.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(id) = &self.identity {
                let read = |path: &PathBuf, what: &str| {
                    std::fs::read(path).with_context(|| format!("{}: cannot read the client {what}", path.display()))
                };
                tls = tls.identity(Identity::from_pem(
                    read(&id.cert, "certificate")?,
                    read(&id.key, "key")?,
                ));
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", self.server))?;
        let bearer = format!("Bearer {}", self.token)
            .parse()
            .context("the token must be printable ASCII")?;
        Ok((channel, Bearer(bearer)))
    }

    pub async fn ingest(&self) -> Result<pb::call_ingest_client::CallIngestClient<Authed>> {
        let (channel, bearer) = self.channel().await?;
        Ok(pb::call_ingest_client::CallIngestClient::with_interceptor(
            channel, bearer,
        ))
    }

    pub async fn supervisor(&self) -> Result<pb::supervisor_client::SupervisorClient<Authed>> {
        let (channel, bearer) = self.channel().await?;
        Ok(pb::supervisor_client::SupervisorClient::with_interceptor(
            channel, bearer,
        ))
    }

    pub async fn admin(&self) -> Result<pb::admin_client::AdminClient<Authed>> {
        let (channel, bearer) = self.channel().await?;
        Ok(pb::admin_client::AdminClient::with_interceptor(channel, bearer))
    }
}

/// A status as a one-line error: its code and the server's message.
pub fn status_error(status: Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

/// A call to stream.
pub struct SoftphoneCall {
    pub call_id: String,
    pub agent_id: String,
    pub team: String,
    pub recording: Recording,
    /// Call-control events, sent when the audio reaches them.
    pub controls: Vec<Control>,
    /// Send as fast as the server takes it instead of in real time.
    pub fast: bool,
    /// Close the stream without END at the end, as a dropped call does.
    pub drop_at_end: bool,
}

/// Audio per packet: 20 ms, as RTP carries it.
const PACKET_S: f64 = 0.02;

/// Streams `call`; every server message goes to `on_message`. Returns the
/// call's end as the server reports it (`None` for a dropped call).
pub async fn softphone(
    conn: &Connection,
    call: SoftphoneCall,
    mut on_message: impl FnMut(&pb::ServerMessage),
) -> Result<Option<pb::CallEnded>> {
    let call = Arc::new(call);
    let started = Instant::now();
    let mut acked = match stream(conn, &call, started, None, &mut on_message).await? {
        Streamed::Done(ended) => return Ok(ended.map(|e| *e)),
        Streamed::Broken { why, acked } => {
            tracing::warn!(call = %call.call_id, "the connection broke ({why}); resuming");
            acked
        }
        Streamed::Unreachable(why) => bail!("cannot connect to {}: {why}", conn.server),
    };
    // Each try that breaks again starts the window afresh: the server's
    // `limits.resume_s` counts from each break.
    let mut broke_at = Instant::now();
    loop {
        match stream(conn, &call, started, Some(acked.clone()), &mut on_message).await {
            Ok(Streamed::Done(ended)) => return Ok(ended.map(|e| *e)),
            Ok(Streamed::Broken { why, acked: now }) => {
                tracing::warn!(call = %call.call_id, "the connection broke again ({why}); resuming");
                acked = now;
                broke_at = Instant::now();
            }
            // The server is not reachable yet: try again until the window closes.
            Ok(Streamed::Unreachable(why)) if broke_at.elapsed() < RESUME_FOR => {
                tracing::debug!(call = %call.call_id, "cannot reach the server yet: {why}");
                tokio::time::sleep(RESUME_RETRY).await;
            }
            Ok(Streamed::Unreachable(why)) => {
                bail!(
                    "cannot resume call {}: the server was unreachable for {} s: {why}",
                    call.call_id,
                    RESUME_FOR.as_secs()
                )
            }
            Err(e) => return Err(e.context(format!("cannot resume call {}", call.call_id))),
        }
    }
}

/// How long a softphone tries to resume a call after its connection broke
/// (the server's `limits.resume_s`, 30 s by default, decides if it still can).
const RESUME_FOR: Duration = Duration::from_secs(30);
const RESUME_RETRY: Duration = Duration::from_millis(200);

/// How one stream of a call ended.
enum Streamed {
    /// The call is over (its end, if the server sent one).
    Done(Option<Box<pb::CallEnded>>),
    /// The transport failed: the call may be resumed from `acked` (the
    /// last Ack's `next_seq`).
    Broken { why: String, acked: Vec<u64> },
    /// The stream could not start: the server was unreachable (why).
    Unreachable(String),
}

/// A failure of the connection itself, not a status the server sent (which
/// carries no source error).
fn is_transport(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// One stream of the call: fresh (`resume` is `None`), or resuming it from
/// where the server says once it has accepted.
async fn stream(
    conn: &Connection,
    call: &Arc<SoftphoneCall>,
    started: Instant,
    resume: Option<Vec<u64>>,
    on_message: &mut impl FnMut(&pb::ServerMessage),
) -> Result<Streamed> {
    let mut client = match conn.ingest().await {
        Ok(client) => client,
        Err(e) if resume.is_some() => return Ok(Streamed::Unreachable(format!("{e:#}"))),
        Err(e) => return Err(e),
    };
    let (tx, rx) = mpsc::channel(32);
    let roles = call
        .recording
        .channels
        .iter()
        .map(|(c, _)| pb::Channel::from(*c) as i32)
        .collect();
    let start = pb::CallStart {
        call_id: call.call_id.clone(),
        agent_id: call.agent_id.clone(),
        team: call.team.clone(),
        sample_rate: call.recording.sample_rate,
        encoding: pb::Encoding::Pcm16le.into(),
        channels: roles,
        resume: resume.clone().map(|acked_seq| pb::Resume { acked_seq }),
    };
    tx.send(message(pb::client_message::Message::Start(start))).await?;
    let resuming = resume.is_some();
    let mut responses = match client.stream_call(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(status) if resuming && is_transport(&status) => {
            return Ok(Streamed::Unreachable(status.message().to_owned()))
        }
        Err(status) => return Err(status_error(status)),
    };
    let mut acked = resume.unwrap_or_default();
    // A fresh call sends from its start; a resumed one once the server's
    // first Ack says from where.
    let mut tx = Some(tx);
    let mut sender =
        (!resuming).then(|| tokio::spawn(send_audio(call.clone(), tx.take().expect("unused"), 0, started)));
    let mut ended = None;
    loop {
        match responses.message().await {
            Ok(Some(msg)) => {
                if let Some(pb::server_message::Message::Ack(ack)) = &msg.message {
                    acked.clone_from(&ack.next_seq);
                    if let Some(tx) = tx.take() {
                        let from = ack.next_seq.iter().copied().min().unwrap_or(0);
                        sender = Some(tokio::spawn(send_audio(call.clone(), tx, from, started)));
                    }
                }
                on_message(&msg);
                if let Some(pb::server_message::Message::Ended(e)) = msg.message {
                    ended = Some(Box::new(e));
                }
            }
            Ok(None) => break,
            Err(status) => {
                if let Some(sender) = &sender {
                    sender.abort();
                }
                if is_transport(&status) {
                    return Ok(Streamed::Broken {
                        why: status.message().to_owned(),
                        acked,
                    });
                }
                return Err(status_error(status));
            }
        }
    }
    if let Some(sender) = sender {
        sender.await??;
    }
    Ok(Streamed::Done(ended))
}

fn message(m: pb::client_message::Message) -> pb::ClientMessage {
    pb::ClientMessage { message: Some(m) }
}

/// Sends the call's audio from packet `from` on (0: the whole call, with
/// its controls; later: what a broken stream may have lost, then the rest,
/// with the controls from there), paced from `started` unless fast.
async fn send_audio(
    call: Arc<SoftphoneCall>,
    tx: mpsc::Sender<pb::ClientMessage>,
    from: u64,
    started: Instant,
) -> Result<()> {
    let rec = &call.recording;
    let block = (rec.sample_rate as f64 * PACKET_S) as usize;
    let len = rec.channels[0].1.len();
    let from_s = (from as usize * block) as f64 / rec.sample_rate as f64;
    let pending: Vec<&Control> = call.controls.iter().filter(|c| from == 0 || c.t_s >= from_s).collect();
    let mut controls = pending.into_iter().peekable();
    let gone = || anyhow::anyhow!("the server closed the call");
    for (seq, pos) in (0..len).step_by(block).enumerate().skip(from as usize) {
        let t_s = pos as f64 / rec.sample_rate as f64;
        while let Some(c) = controls.next_if(|c| c.t_s <= t_s) {
            tx.send(message(pb::client_message::Message::Control(control(c))))
                .await
                .map_err(|_| gone())?;
        }
        if !call.fast {
            tokio::time::sleep_until((started + Duration::from_secs_f64(t_s)).into()).await;
        }
        let end = (pos + block).min(len);
        for (index, (_, samples)) in rec.channels.iter().enumerate() {
            let data = samples[pos..end]
                .iter()
                .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
                .collect();
            let audio = pb::Audio {
                channel: index as u32,
                seq: seq as u64,
                data,
            };
            tx.send(message(pb::client_message::Message::Audio(audio)))
                .await
                .map_err(|_| gone())?;
        }
    }
    for c in controls {
        tx.send(message(pb::client_message::Message::Control(control(c))))
            .await
            .map_err(|_| gone())?;
    }
    if !call.drop_at_end {
        let end = pb::CallControl {
            action: pb::call_control::Action::End.into(),
            transfer_to: String::new(),
        };
        tx.send(message(pb::client_message::Message::Control(end)))
            .await
            .map_err(|_| gone())?;
        // Keep the stream open until the server has sent the call's end.
        tx.closed().await;
    }
    Ok(())
}

fn control(c: &Control) -> pb::CallControl {
    use pb::call_control::Action;
    let action = match c.kind {
        ControlKind::Hold => Action::Hold,
        ControlKind::Unhold => Action::Unhold,
        ControlKind::Mute => Action::Mute,
        ControlKind::Unmute => Action::Unmute,
        ControlKind::Transfer => Action::Transfer,
        ControlKind::End | ControlKind::Dropped => Action::End,
    };
    pb::CallControl {
        action: action.into(),
        transfer_to: c.to.clone().unwrap_or_default(),
    }
}

/// How `softphone` and `watch` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// JSON lines as `monitor --json` prints them.
    Json,
    /// Colour for a terminal.
    Colour,
    Plain,
}

impl Style {
    pub fn for_stdout(json: bool) -> Self {
        use std::io::IsTerminal;
        match (json, std::io::stdout().is_terminal()) {
            (true, _) => Self::Json,
            (false, true) => Self::Colour,
            (false, false) => Self::Plain,
        }
    }
}

fn paint(style: Style, severity: i32, text: &str) -> String {
    if style != Style::Colour {
        return text.to_owned();
    }
    let colour = match pb::Severity::try_from(severity) {
        Ok(pb::Severity::Critical) => "1;31",
        Ok(pb::Severity::Warning) => "1;33",
        _ => "36",
    };
    format!("\x1b[{colour}m{text}\x1b[0m")
}

/// A server message to the softphone, printed (`None`: nothing to show).
pub fn show_server_message(msg: &pb::ServerMessage, style: Style) -> Option<String> {
    use pb::server_message::Message;
    match (msg.message.as_ref()?, style) {
        (Message::Nudge(a), Style::Json) => Some(RuleOutput::Alert(Alert::from(a)).to_json()),
        (Message::Nudge(a), _) => Some(paint(style, a.severity, &format!("nudge {}", Alert::from(a)))),
        (Message::Retraction(r), Style::Json) => Some(retraction_json(r)),
        (Message::Retraction(r), _) => Some(format!(
            "nudge {} withdrawn: the final transcript disagreed",
            r.alert_id
        )),
        (Message::Ended(e), Style::Json) => e.scorecard.as_ref().map(|c| Scorecard::from(c).to_json()),
        (Message::Ended(e), _) => Some(show_ended(e)),
        (Message::Accepted(info), Style::Json) => {
            Some(serde_json::json!({"type": "accepted", "call_id": info.call_id}).to_string())
        }
        (Message::Accepted(info), _) => Some(format!("call {} accepted", info.call_id)),
        (Message::Ack(_), _) => None,
    }
}

fn retraction_json(r: &pb::Retraction) -> String {
    RuleOutput::Retract {
        id: r.alert_id,
        call_id: r.call_id.as_str().into(),
    }
    .to_json()
}

fn show_ended(e: &pb::CallEnded) -> String {
    let info = e.call.clone().unwrap_or_default();
    let state = pb::CallState::try_from(info.state).map_or("?", |s| s.as_str_name());
    let mut text = format!(
        "call {} of agent {} ended ({}, {:.1} s of audio, {} alerts){}",
        info.call_id,
        info.agent_id,
        state.trim_start_matches("CALL_STATE_").to_lowercase(),
        info.audio_s,
        info.alerts,
        if info.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", info.reason)
        }
    );
    if let Some(card) = &e.scorecard {
        text.push('\n');
        text.push_str(&Scorecard::from(card).to_string());
    }
    text
}

/// A feed event, printed (`None`: nothing to show in this style).
pub fn show_alert_event(event: &pb::AlertEvent, style: Style) -> Option<String> {
    use pb::alert_event::Event;
    match (event.event.as_ref()?, style) {
        (Event::Alert(a), Style::Json) => Some(RuleOutput::Alert(Alert::from(a)).to_json()),
        (Event::Retraction(r), Style::Json) => Some(retraction_json(r)),
        (Event::CallEnded(e), Style::Json) => e.scorecard.as_ref().map(|c| Scorecard::from(c).to_json()),
        (_, Style::Json) => None,
        (Event::Alert(a), _) => Some(paint(
            style,
            a.severity,
            &format!("{} · {}", event.agent_id, Alert::from(a)),
        )),
        (Event::Retraction(r), _) => Some(format!(
            "alert {} of call {} retracted: the final transcript disagreed",
            r.alert_id, r.call_id
        )),
        (Event::Acknowledgement(a), _) => Some(format!(
            "alert {} of call {} claimed by {}{}",
            a.alert_id,
            a.call_id,
            a.by,
            if a.note.is_empty() {
                String::new()
            } else {
                format!(": {}", a.note)
            }
        )),
        (Event::CallStarted(s), _) => s
            .call
            .as_ref()
            .map(|c| format!("call {} started: agent {}, team {}", c.call_id, c.agent_id, c.team)),
        (Event::CallEnded(e), _) => Some(show_ended(e)),
    }
}

/// What `watch` follows.
#[derive(Debug, Clone, Default)]
pub struct WatchFilter {
    pub team: String,
    pub agent_id: String,
    pub min_severity: Option<pb::Severity>,
    pub rule_id: String,
}

/// Follows the feed, reconnecting after a lost connection and resuming from
/// the last cursor, so nothing is missed or seen twice. Returns after
/// `exit_after_calls` calls have ended (never when `None`), or on an error
/// that retrying cannot fix (a bad token, a team out of scope).
pub async fn watch(
    conn: &Connection,
    filter: WatchFilter,
    mut resume_after: String,
    exit_after_calls: Option<usize>,
    mut on_event: impl FnMut(&pb::AlertEvent),
) -> Result<String> {
    let mut ended = 0;
    let mut backoff = Duration::from_millis(250);
    loop {
        let request = pb::WatchAlertsRequest {
            team: filter.team.clone(),
            agent_id: filter.agent_id.clone(),
            min_severity: filter.min_severity.map_or(0, |s| s as i32),
            rule_id: filter.rule_id.clone(),
            resume_after: resume_after.clone(),
            backlog: 0,
        };
        let result = async {
            let mut client = conn.supervisor().await?;
            let mut stream = client
                .watch_alerts(request)
                .await
                .map_err(status_error_keep)?
                .into_inner();
            backoff = Duration::from_millis(250);
            while let Some(event) = stream.message().await.map_err(status_error_keep)? {
                // Service alerts are not stored and carry no cursor.
                if !event.cursor.is_empty() {
                    resume_after = event.cursor.clone();
                }
                on_event(&event);
                if matches!(event.event, Some(pb::alert_event::Event::CallEnded(_))) {
                    ended += 1;
                    if exit_after_calls.is_some_and(|n| ended >= n) {
                        return Ok(true);
                    }
                }
            }
            Ok::<bool, anyhow::Error>(false)
        }
        .await;
        match result {
            Ok(true) => return Ok(resume_after),
            Ok(false) => tracing::warn!("the server ended the alert feed; reconnecting"),
            Err(e) => {
                if let Some(status) = e.downcast_ref::<Status>() {
                    if matches!(
                        status.code(),
                        Code::Unauthenticated | Code::PermissionDenied | Code::InvalidArgument
                    ) {
                        bail!("{:?}: {}", status.code(), status.message());
                    }
                }
                eprintln!("disconnected ({e:#}); reconnecting from cursor {resume_after:?}");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Keeps the status inside the error so `watch` can tell which are final.
fn status_error_keep(status: Status) -> anyhow::Error {
    anyhow::Error::new(status)
}
