//! `callwatch gateway-replay --protocol twilio`: streams a recording as
//! Twilio Media Streams does, written from Twilio's public documentation so
//! that a real Twilio account works the first time: the upgrade signed with
//! `X-Twilio-Signature`, then `connected`, `start`, `media` every 20 ms per
//! track (base64 8 kHz mu-law; the agent as `outbound`, the customer as
//! `inbound`), and `stop` — or, for a dropped call, a close without `stop`.

pub mod mulaw;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha1::Sha1;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use callwatch_core::audio::{Channel, Recording};
use callwatch_core::rules::config::ControlKind;
use callwatch_core::rules::Control;

/// Media Streams' audio: 8 kHz mono mu-law, 20 ms a message.
const RATE: u32 = 8_000;
const FRAME: usize = 160;

/// A call to replay.
pub struct TwilioCall {
    /// The `callSid`: the call's id at callwatch.
    pub call_sid: String,
    pub recording: Recording,
    /// `customParameters` (`agent`, `team`).
    pub parameters: HashMap<String, String>,
    /// Twilio carries no call control: only `end` is used (`stop` at its
    /// time); anything else is refused.
    pub controls: Vec<Control>,
    /// Send as fast as the socket takes it instead of in real time.
    pub fast: bool,
    /// Close without `stop` at the end, as a dropped call does.
    pub drop_at_end: bool,
}

/// Where to stream and how to sign.
pub struct Target {
    /// The WebSocket URL to connect to.
    pub url: String,
    /// The URL Twilio would sign (the server's `public_url`) [default: `url`].
    pub signed_url: Option<String>,
    /// The account's auth token; `None` sends no signature.
    pub auth_token: Option<String>,
}

/// How the server closed the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

/// Twilio's signature of `url` (HMAC-SHA1 keyed with the auth token, base64).
pub fn signature(auth_token: &str, url: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The instant `stop` is sent, from the controls: the first `end`.
fn stop_at(controls: &[Control]) -> Result<Option<f64>> {
    for c in controls {
        if c.kind != ControlKind::End {
            bail!(
                "Twilio Media Streams carry no call control: the {:?} event at {} s cannot be sent (only end)",
                c.kind,
                c.t_s
            );
        }
    }
    Ok(controls.first().map(|c| c.t_s))
}

/// Each leg as Twilio's track name and its 8 kHz mu-law bytes.
fn legs(recording: &Recording) -> Result<Vec<(&'static str, Vec<u8>)>> {
    recording
        .channels
        .iter()
        .map(|(channel, samples)| {
            let track = match channel {
                Channel::Agent => "outbound",
                Channel::Customer | Channel::Mono => "inbound",
            };
            let at_8k = mulaw::downsample(samples, recording.sample_rate, RATE)?;
            Ok((track, at_8k.iter().map(|&s| mulaw::encode(s)).collect()))
        })
        .collect()
}

/// Streams `call`; returns how the server closed the stream (after `stop`,
/// once the call is stored), or `None` for a dropped call.
pub async fn replay(target: &Target, call: TwilioCall) -> Result<Option<Closed>> {
    let stop = stop_at(&call.controls)?;
    let legs = legs(&call.recording)?;
    let mut request = target
        .url
        .as_str()
        .into_client_request()
        .with_context(|| format!("bad URL {}", target.url))?;
    if let Some(token) = &target.auth_token {
        let signed = target.signed_url.as_deref().unwrap_or(&target.url);
        request
            .headers_mut()
            .insert("X-Twilio-Signature", signature(token, signed).parse()?);
    }
    let (socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(WsError::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            bail!("the server refused the stream: {} {}", response.status(), body.trim());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot connect to {}", target.url)),
    };
    let (mut tx, mut rx) = socket.split();
    // The server sends nothing but its close: read it beside the sending.
    let closed = tokio::spawn(async move {
        while let Some(frame) = rx.next().await {
            match frame {
                Ok(Message::Close(Some(frame))) => {
                    return Some(Closed {
                        code: u16::from(frame.code),
                        reason: frame.reason.to_string(),
                    })
                }
                Ok(Message::Close(None)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        None
    });
    let stream_sid = format!("MZ{:032x}", hash(&call.call_sid));
    let mut sequence = 0u64;
    let mut send = |event: serde_json::Value| {
        sequence += 1;
        let mut event = event;
        if sequence > 1 {
            event["sequenceNumber"] = json!(sequence.to_string());
            event["streamSid"] = json!(stream_sid);
        }
        Message::text(event.to_string())
    };
    let tracks: Vec<&str> = legs.iter().map(|(t, _)| *t).collect();
    let messages = [
        send(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})),
        send(json!({"event": "start", "start": {
            "accountSid": "AC00000000000000000000000000000000",
            "streamSid": stream_sid,
            "callSid": call.call_sid,
            "tracks": tracks,
            "customParameters": call.parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
        }})),
    ];
    let gone = |e: WsError| anyhow::anyhow!("the server closed the stream: {e}");
    for m in messages {
        tx.send(m).await.map_err(gone)?;
    }
    let len = legs.iter().map(|(_, b)| b.len()).max().unwrap_or(0);
    let started = Instant::now();
    for (chunk, pos) in (0..len).step_by(FRAME).enumerate() {
        let ms = pos as u64 * 1000 / RATE as u64;
        if stop.is_some_and(|t| ms as f64 / 1000.0 >= t) {
            break;
        }
        if !call.fast {
            tokio::time::sleep_until((started + Duration::from_millis(ms)).into()).await;
        }
        for (track, bytes) in &legs {
            let Some(frame) = bytes.get(pos..(pos + FRAME).min(bytes.len())) else {
                continue;
            };
            let media = send(json!({"event": "media", "media": {
                "track": track,
                "chunk": (chunk + 1).to_string(),
                "timestamp": ms.to_string(),
                "payload": base64::engine::general_purpose::STANDARD.encode(frame),
            }}));
            tx.send(media).await.map_err(gone)?;
        }
    }
    if call.drop_at_end {
        // Gone without `stop`, as when a call's media leg is lost.
        let _ = tx.close().await;
        closed.abort();
        return Ok(None);
    }
    let stop = send(json!({"event": "stop", "stop": {
        "accountSid": "AC00000000000000000000000000000000",
        "callSid": call.call_sid,
    }}));
    tx.send(stop).await.map_err(gone)?;
    let closed = closed.await?;
    // Answer the close, as a WebSocket peer does.
    let _ = tx.close().await;
    Ok(closed)
}

/// A stable number for a stream id made from the call id.
fn hash(s: &str) -> u128 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u128, |h, b| {
        (h ^ u128::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Closed {
    /// Whether the call ended as it should (1000, "call ended").
    pub fn is_normal(&self) -> bool {
        self.code == u16::from(CloseCode::Normal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_twilio_does() {
        // Python: base64.b64encode(hmac.new(b"12345", url.encode(), hashlib.sha1).digest())
        assert_eq!(
            signature("12345", "wss://callwatch.example.com/ingest/twilio"),
            "pFbdYpGWitsn4qLHSi5nvLWs+cI="
        );
    }

    #[test]
    fn only_an_end_event_can_be_carried() {
        let c = |kind, t_s| Control { t_s, kind, to: None };
        assert_eq!(stop_at(&[]).unwrap(), None);
        assert_eq!(stop_at(&[c(ControlKind::End, 12.5)]).unwrap(), Some(12.5));
        let err = stop_at(&[c(ControlKind::Hold, 3.0)]).unwrap_err().to_string();
        assert!(err.contains("no call control") && err.contains("Hold"), "{err}");
    }
}
