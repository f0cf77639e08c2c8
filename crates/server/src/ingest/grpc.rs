//! `CallIngest.StreamCall`, the softphone's adapter: the first message
//! (`CallStart`) is checked and opens a call session; a task then feeds the
//! session the stream's audio and call-control events until `END`, a
//! dropped connection, bad input or shutdown; the session's replies are the
//! response stream, encoded as `ServerMessage`s. A stream that breaks at
//! the transport parks its call for `limits.resume_s` (see `resume`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_stream::adapters::Map;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use super::per_token::TokenCalls;
use super::resume::{Parked, Parking, Replies};
use crate::context::Shared;
use crate::session::{self, Abort, CallSpec, Ending, Outgoing, Refusal};
use crate::{auth, pb};
use callwatch_core::audio::Channel;
use callwatch_core::capture::network::Encoding;
use callwatch_core::capture::SourceFormat;
use callwatch_core::rules::config::ControlKind;

use pb::client_message::Message as In;
use pb::server_message::Message as Out;

pub struct Ingest {
    shared: Arc<Shared>,
    /// Calls whose stream broke, waiting to be resumed.
    parking: Arc<Parking>,
    tokens: TokenCalls,
}

impl Ingest {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            parking: Arc::default(),
            tokens: TokenCalls::default(),
        }
    }
}

type Reply = Result<pb::ServerMessage, Status>;

/// Longest name a softphone may send (call id, agent, team, transfer
/// target): each is stored with the call and sent with every event.
const MAX_NAME_BYTES: usize = 128;

/// Checks `CallStart` and says what call it opens.
pub fn check_start(start: &pb::CallStart) -> Result<CallSpec, Status> {
    let invalid = |m: String| Err(Status::invalid_argument(format!("CallStart: {m}")));
    if start.call_id.is_empty() || start.call_id.len() > MAX_NAME_BYTES {
        return invalid("call_id must be 1 to 128 characters".into());
    }
    if start.agent_id.is_empty() {
        return invalid("agent_id is empty".into());
    }
    for (field, value) in [("agent_id", &start.agent_id), ("team", &start.team)] {
        if value.len() > MAX_NAME_BYTES {
            return invalid(format!(
                "{field} is {} bytes, over the limit of {MAX_NAME_BYTES}",
                value.len()
            ));
        }
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
    Ok(CallSpec {
        call_id: start.call_id.clone(),
        agent_id: start.agent_id.clone(),
        team: start.team.clone(),
        format: SourceFormat {
            sample_rate: start.sample_rate,
            channels,
        },
        encoding,
    })
}

/// A `CallControl` as the session takes it: the action and, for a
/// transfer, its recipient.
pub fn control(c: &pb::CallControl) -> Result<(ControlKind, Option<String>), Abort> {
    use pb::call_control::Action;
    let kind = match c.action() {
        Action::Hold => ControlKind::Hold,
        Action::Unhold => ControlKind::Unhold,
        Action::Mute => ControlKind::Mute,
        Action::Unmute => ControlKind::Unmute,
        Action::Transfer => ControlKind::Transfer,
        Action::End => ControlKind::End,
        Action::Unspecified => {
            return Err(Abort::BadInput(format!("CallControl: unknown action {}", c.action)));
        }
    };
    if c.transfer_to.len() > MAX_NAME_BYTES {
        return Err(Abort::BadInput(format!(
            "CallControl: transfer_to is {} bytes, over the limit of {MAX_NAME_BYTES}",
            c.transfer_to.len()
        )));
    }
    if kind == ControlKind::Transfer && c.transfer_to.is_empty() {
        return Err(Abort::BadInput(
            "CallControl TRANSFER needs transfer_to: the recipient's name".into(),
        ));
    }
    Ok((kind, (!c.transfer_to.is_empty()).then(|| c.transfer_to.clone())))
}

fn refused(refusal: Refusal) -> Status {
    let message = refusal.to_string();
    match refusal {
        Refusal::ShuttingDown | Refusal::StoreFailed(_) => Status::unavailable(message),
        Refusal::Busy(_) | Refusal::AgentBusy(..) => Status::resource_exhausted(message),
        Refusal::Live(_) | Refusal::Stored(_) => Status::already_exists(message),
        Refusal::Internal(_) => Status::internal(message),
    }
}

/// A session's reply as the softphone receives it; the last one of an
/// aborted or failed call is the stream's error status.
fn reply(outgoing: Outgoing) -> Reply {
    let message = match outgoing {
        Outgoing::Accepted(info) => Out::Accepted(info),
        Outgoing::Ack(r) => Out::Ack(pb::Ack {
            received_s: r.received_s,
            gaps: r.gaps,
            repeats: r.repeats,
            next_seq: r.next_seq,
        }),
        Outgoing::Nudge(alert) => Out::Nudge(alert),
        Outgoing::Retraction(retraction) => Out::Retraction(retraction),
        Outgoing::Ended(ended) => Out::Ended(ended),
        Outgoing::Aborted(why @ Abort::BadInput(_)) => return Err(Status::invalid_argument(why.to_string())),
        Outgoing::Aborted(why @ Abort::TooLarge(_)) => return Err(Status::resource_exhausted(why.to_string())),
        Outgoing::Aborted(why @ (Abort::ShuttingDown | Abort::StoreFailed(_))) => {
            return Err(Status::unavailable(why.to_string()))
        }
        Outgoing::Aborted(why @ Abort::Fault(_)) => return Err(Status::internal(why.to_string())),
        Outgoing::Failed => return Err(Status::internal("the call's session failed; see the server log")),
    };
    Ok(pb::ServerMessage { message: Some(message) })
}

#[tonic::async_trait]
impl pb::call_ingest_server::CallIngest for Ingest {
    type StreamCallStream = Map<Replies, fn(Outgoing) -> Reply>;

    async fn stream_call(
        &self,
        request: Request<Streaming<pb::ClientMessage>>,
    ) -> Result<Response<Self::StreamCallStream>, Status> {
        let who = auth::identity(&request)?;
        let limits = &self.shared.config.limits;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(Duration::from_secs_f64(limits.start_timeout_s), inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "no CallStart within {} s (limits.start_timeout_s)",
                    limits.start_timeout_s
                ))
            })?;
        let first = match first {
            Ok(first) => first,
            Err(status) => {
                return Err(match unreadable(&status) {
                    Some(Abort::TooLarge(m)) => Status::resource_exhausted(m),
                    Some(why) => Status::invalid_argument(why.to_string()),
                    None => status,
                })
            }
        };
        let start = match first.and_then(|m| m.message) {
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
        let mut spec = check_start(&start)?;
        who.may_stream_as(&start.agent_id)?;
        let timeouts = Timeouts {
            idle: Duration::from_secs_f64(limits.idle_timeout_s),
            call: Duration::from_secs_f64(limits.max_call_s),
            burst: (!who.fast).then(|| Duration::from_secs_f64(limits.pace_burst_s)),
            resume: Duration::from_secs_f64(limits.resume_s),
        };
        let call = match &start.resume {
            Some(resume) => {
                self.shared.accepting()?;
                let mut parked = self.parking.resume(&start, resume, &spec)?;
                parked.handle.resumed().await;
                parked
            }
            None => {
                spec.team = self.shared.agents.team_of(&spec.agent_id, &spec.team)?;
                let token = self.tokens.take(who.token, &who.name, limits.calls_per_token)?;
                let (handle, replies) = session::open(&self.shared, spec.clone()).await.map_err(refused)?;
                Parked {
                    handle,
                    replies: Replies::new(replies),
                    spec,
                    opened: Instant::now(),
                    token,
                }
            }
        };
        let replies = call.replies.clone();
        tokio::spawn(feed(call, inbound, timeouts, self.parking.clone()));
        Ok(Response::new(replies.map(reply as fn(Outgoing) -> Reply)))
    }
}

/// How long a call's stream may go without audio, and how long it may last.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    idle: Duration,
    call: Duration,
    /// How far the audio may run ahead of real time; `None`: unpaced.
    burst: Option<Duration>,
    /// How long a call whose stream broke may be resumed.
    resume: Duration,
}

/// Why a stream stopped carrying its call.
enum Stop {
    /// The call is over, one way or another.
    End(Ending),
    /// The transport failed (why): the call may be resumed.
    Broken(String),
}

/// Why a stream's message could not be read, when the fault is the
/// message's (tonic reports both as statuses of its own choosing): too
/// large (over the service's decode limit), or not a `ClientMessage`.
/// `None`: the connection failed or went away.
fn unreadable(status: &Status) -> Option<Abort> {
    match status.code() {
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => Some(Abort::TooLarge(format!(
            "a message over the size limit (limits.max_chunk_bytes): {}",
            status.message()
        ))),
        tonic::Code::Internal
            if status.message().starts_with("failed to decode") || status.message().starts_with("protocol error") =>
        {
            Some(Abort::BadInput(format!("a malformed message: {}", status.message())))
        }
        _ => None,
    }
}

/// Feeds the stream's messages to the call until it ends, one way or
/// another. Shutdown interrupts it even while it waits for room in the
/// call's rings or reply queue.
async fn feed(mut call: Parked, mut inbound: Streaming<pb::ClientMessage>, timeouts: Timeouts, parking: Arc<Parking>) {
    let stopping = call.handle.stopping();
    let stop = tokio::select! {
        stop = pump(&mut call, &mut inbound, timeouts) => stop,
        _ = stopping => Stop::End(Ending::Aborted(Abort::ShuttingDown)),
    };
    let ending = match stop {
        Stop::Broken(why) if !timeouts.resume.is_zero() => return parking.park(call, why, timeouts.resume),
        Stop::Broken(why) => Ending::Dropped(why),
        Stop::End(ending) => ending,
    };
    if let Ending::Dropped(why) = &ending {
        tracing::warn!(call = %call.spec.call_id, "call dropped: {why}");
    }
    call.handle.finish(ending);
}

async fn pump(parked: &mut Parked, inbound: &mut Streaming<pb::ClientMessage>, timeouts: Timeouts) -> Stop {
    let (call, opened) = (&mut parked.handle, parked.opened);
    let mut heard = Instant::now();
    // Pacing counts from this stream's first audio and the call time then
    // (a resumed stream resends what the broken one lost at once).
    let mut paced_from = None;
    loop {
        // Only the wait for the far end counts: time spent waiting for room
        // in the call's own rings is the server's.
        let idle_at = heard + timeouts.idle;
        let over_at = opened + timeouts.call;
        let message = match tokio::time::timeout_at(idle_at.min(over_at), inbound.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return Stop::End(Ending::Dropped("the stream closed without END".into())),
            Ok(Err(status)) => {
                return match unreadable(&status) {
                    Some(why) => Stop::End(Ending::Aborted(why)),
                    None => Stop::Broken(format!("the connection failed: {}", status.message())),
                }
            }
            Err(_) if over_at <= idle_at => {
                return Stop::End(Ending::Dropped(format!(
                    "the call lasted {} s, the limit (limits.max_call_s)",
                    timeouts.call.as_secs_f64()
                )))
            }
            Err(_) => {
                return Stop::End(Ending::Dropped(format!(
                    "no audio for {} s (limits.idle_timeout_s)",
                    timeouts.idle.as_secs_f64()
                )))
            }
        };
        match message.message {
            Some(In::Audio(audio)) => {
                let before_s = call.receipt().received_s;
                if let Err(why) = call.audio(audio.channel as usize, audio.seq, &audio.data).await {
                    return Stop::End(Ending::Aborted(why));
                }
                heard = Instant::now();
                // Pacing: audio ahead of real time by more than the burst
                // waits here, unread, so HTTP/2 flow control holds the
                // sender back (nothing is buffered for it) and one client
                // cannot fill the shared transcriber queue.
                if let Some(burst) = timeouts.burst {
                    let (from, from_s) = *paced_from.get_or_insert((heard, before_s));
                    let due = from + Duration::from_secs_f64(call.receipt().received_s - from_s);
                    if due > heard + burst {
                        tokio::time::sleep_until(due - burst).await;
                        heard = Instant::now();
                    }
                }
            }
            Some(In::Control(c)) => match control(&c) {
                Ok((kind, to)) => {
                    call.control(kind, to).await;
                    if kind == ControlKind::End {
                        return Stop::End(Ending::Ended);
                    }
                }
                Err(why) => return Stop::End(Ending::Aborted(why)),
            },
            Some(In::Start(_)) => {
                return Stop::End(Ending::Aborted(Abort::BadInput(
                    "a second CallStart: one stream carries one call".into(),
                )))
            }
            None => return Stop::End(Ending::Aborted(Abort::BadInput("an empty ClientMessage".into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn start() -> pb::CallStart {
        pb::CallStart {
            call_id: "c-1".into(),
            agent_id: "a17".into(),
            team: "billing".into(),
            sample_rate: 8_000,
            encoding: pb::Encoding::Mulaw.into(),
            channels: vec![pb::Channel::Agent.into(), pb::Channel::Customer.into()],
            resume: None,
        }
    }

    fn refusal(start: pb::CallStart) -> String {
        let status = check_start(&start).expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        status.message().to_owned()
    }

    #[test]
    fn a_good_start_becomes_the_sessions_spec() {
        let spec = check_start(&start()).unwrap();
        assert_eq!(
            (spec.call_id.as_str(), spec.agent_id.as_str(), spec.team.as_str()),
            ("c-1", "a17", "billing")
        );
        assert_eq!(spec.format.sample_rate, 8_000);
        assert_eq!(spec.format.channels, [Channel::Agent, Channel::Customer]);
        assert_eq!(spec.encoding, Encoding::MuLaw);
        let mixed = pb::CallStart {
            channels: vec![pb::Channel::Mixed.into()],
            encoding: pb::Encoding::F32le.into(),
            sample_rate: 48_000,
            ..start()
        };
        let spec = check_start(&mixed).unwrap();
        assert_eq!(
            (spec.format.channels.as_slice(), spec.encoding),
            ([Channel::Mono].as_slice(), Encoding::F32Le)
        );
    }

    #[test]
    fn a_bad_start_is_refused_by_name() {
        let m = refusal(pb::CallStart {
            call_id: String::new(),
            ..start()
        });
        assert!(m.contains("call_id must be 1 to 128"), "{m}");
        let m = refusal(pb::CallStart {
            call_id: "x".repeat(129),
            ..start()
        });
        assert!(m.contains("call_id"), "{m}");
        let m = refusal(pb::CallStart {
            agent_id: String::new(),
            ..start()
        });
        assert!(m.contains("agent_id is empty"), "{m}");
        let m = refusal(pb::CallStart {
            agent_id: "a".repeat(129),
            ..start()
        });
        assert!(m.contains("agent_id is 129 bytes, over the limit of 128"), "{m}");
        let m = refusal(pb::CallStart {
            team: "t".repeat(1 << 20),
            ..start()
        });
        assert!(m.contains("team is 1048576 bytes"), "{m}");
        let m = refusal(pb::CallStart {
            encoding: 99,
            ..start()
        });
        assert!(m.contains("unknown encoding 99"), "{m}");
        let m = refusal(pb::CallStart {
            sample_rate: 96_000,
            ..start()
        });
        assert!(m.contains("sample_rate 96000 Hz"), "{m}");
        let m = refusal(pb::CallStart {
            channels: vec![42],
            ..start()
        });
        assert!(m.contains("unknown channel role 42"), "{m}");
        for channels in [
            vec![],
            vec![pb::Channel::Agent.into(), pb::Channel::Agent.into()],
            vec![
                pb::Channel::Agent.into(),
                pb::Channel::Customer.into(),
                pb::Channel::Mixed.into(),
            ],
        ] {
            let m = refusal(pb::CallStart {
                channels: channels.clone(),
                ..start()
            });
            assert!(m.contains("one or two different parties"), "{channels:?}: {m}");
        }
    }

    #[test]
    fn call_control_converts_and_checks_transfers() {
        use pb::call_control::Action;
        let c = |action: Action, to: &str| pb::CallControl {
            action: action.into(),
            transfer_to: to.into(),
        };
        assert_eq!(control(&c(Action::Hold, "")), Ok((ControlKind::Hold, None)));
        assert_eq!(control(&c(Action::End, "")), Ok((ControlKind::End, None)));
        assert_eq!(
            control(&c(Action::Transfer, "Billing desk")),
            Ok((ControlKind::Transfer, Some("Billing desk".into())))
        );
        assert!(matches!(control(&c(Action::Transfer, "")), Err(Abort::BadInput(m)) if m.contains("transfer_to")));
        assert!(
            matches!(control(&c(Action::Transfer, &"x".repeat(200))), Err(Abort::BadInput(m)) if m.contains("transfer_to is 200 bytes"))
        );
        assert!(
            matches!(control(&c(Action::Unspecified, "")), Err(Abort::BadInput(m)) if m.contains("unknown action"))
        );
    }

    #[test]
    fn replies_encode_and_the_last_of_an_aborted_call_is_its_status() {
        let ack = reply(Outgoing::Ack(session::Receipt {
            received_s: 2.0,
            gaps: vec![1, 0],
            repeats: vec![0, 3],
            next_seq: vec![7, 7],
        }))
        .unwrap();
        assert_eq!(
            ack.message,
            Some(Out::Ack(pb::Ack {
                received_s: 2.0,
                gaps: vec![1, 0],
                repeats: vec![0, 3],
                next_seq: vec![7, 7],
            }))
        );
        let bad = reply(Outgoing::Aborted(Abort::BadInput("audio packet 3: odd length".into()))).unwrap_err();
        assert_eq!(
            (bad.code(), bad.message()),
            (Code::InvalidArgument, "audio packet 3: odd length")
        );
        assert_eq!(
            reply(Outgoing::Aborted(Abort::ShuttingDown)).unwrap_err().code(),
            Code::Unavailable
        );
        assert_eq!(reply(Outgoing::Failed).unwrap_err().code(), Code::Internal);
        assert_eq!(refused(Refusal::Busy(8)).code(), Code::ResourceExhausted);
        assert!(refused(Refusal::Busy(8)).message().contains("limits.max_calls"));
        assert_eq!(refused(Refusal::Live("x".into())).code(), Code::AlreadyExists);
        assert_eq!(refused(Refusal::ShuttingDown).code(), Code::Unavailable);
    }
}
