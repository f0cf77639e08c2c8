//! Twilio Media Streams messages, as Twilio sends them (JSON text frames):
//! `connected`, `start`, `media`, `mark`, `dtmf`, `stop`. Parsing checks
//! shape and values; [`Stream`] checks order and turns `media` into the
//! session's audio packets, a gap in `timestamp` becoming silence.

use std::collections::HashMap;

use base64::Engine as _;
use serde::Deserialize;

use callwatch_core::audio::Channel;

/// Media Streams send 8 kHz mono mu-law, and nothing else.
pub const SAMPLE_RATE: u32 = 8_000;
/// Mu-law silence (decodes to 0).
const MULAW_SILENCE: u8 = 0xFF;
/// Silence written for one gap at most (as the gRPC inlet does for a
/// sequence gap): a wild timestamp must not stall the call.
const MAX_GAP_MS: u64 = 2_000;
/// A jump in `timestamp` shorter than this is jitter in Twilio's clock, not
/// lost audio.
const GAP_TOLERANCE_MS: u64 = 10;
/// Silence for a gap goes in packets of 20 ms.
const SILENCE_PACKET: u64 = 160;

#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Message {
    Connected,
    Start { start: Start },
    Media { media: Media },
    Mark,
    Dtmf,
    Stop,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    pub stream_sid: String,
    pub call_sid: String,
    pub tracks: Vec<String>,
    #[serde(default)]
    pub custom_parameters: HashMap<String, String>,
    pub media_format: MediaFormat,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    pub encoding: String,
    pub sample_rate: u32,
    pub channels: u32,
}

#[derive(Debug, Deserialize)]
pub struct Media {
    pub track: String,
    /// Twilio sends numbers as strings.
    pub chunk: String,
    pub timestamp: String,
    pub payload: String,
}

/// Parses one text frame; the error says what was wrong.
pub fn parse(text: &str) -> Result<Message, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let event = value
        .get("event")
        .and_then(|e| e.as_str())
        .ok_or("a message without an \"event\"")?
        .to_owned();
    if !["connected", "start", "media", "mark", "dtmf", "stop"].contains(&event.as_str()) {
        return Err(format!("unknown event {:?}", clip(&event)));
    }
    serde_json::from_value(value).map_err(|e| format!("bad {event:?} message: {e}"))
}

/// Which party each Twilio track is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracks {
    pub inbound: Channel,
    pub outbound: Channel,
}

/// The call a `start` opens, as checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    pub call_id: String,
    pub agent_id: String,
    /// The `team` parameter ("" when absent): the config's team wins.
    pub claimed_team: String,
    /// The session's channels, in the order of `start.tracks`.
    pub channels: Vec<Channel>,
}

/// One audio packet for the session.
#[derive(Debug, PartialEq)]
pub struct Packet {
    pub channel: usize,
    pub seq: u64,
    pub data: Vec<u8>,
}

/// A stream's state after `start`: per track, where its audio has reached.
#[derive(Debug)]
pub struct Stream {
    tracks: Vec<String>,
    next: Vec<Leg>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Leg {
    seq: u64,
    /// Call time reached on this track, ms (8 mu-law bytes a millisecond).
    samples: u64,
}

/// Checks `start`: audio/x-mulaw 8000 Hz mono, one or two known tracks, an
/// `agent` parameter.
pub fn open(start: &Start, map: Tracks) -> Result<(Opened, Stream), String> {
    let f = &start.media_format;
    if f.encoding != "audio/x-mulaw" || f.sample_rate != SAMPLE_RATE || f.channels != 1 {
        return Err(format!(
            "mediaFormat {:?} {} Hz {} channel(s): only audio/x-mulaw 8000 Hz mono is understood",
            clip(&f.encoding),
            f.sample_rate,
            f.channels
        ));
    }
    if start.call_sid.is_empty() || start.call_sid.len() > 128 {
        return Err("start.callSid must be 1 to 128 characters".into());
    }
    let mut channels = Vec::new();
    for track in &start.tracks {
        let channel = match track.as_str() {
            "inbound" => map.inbound,
            "outbound" => map.outbound,
            other => return Err(format!("start.tracks: unknown track {:?}", clip(other))),
        };
        if channels.contains(&channel) {
            return Err(format!("start.tracks {:?}: each track once", start.tracks));
        }
        channels.push(channel);
    }
    if channels.is_empty() {
        return Err("start.tracks is empty".into());
    }
    let agent_id = start.custom_parameters.get("agent").cloned().unwrap_or_default();
    if agent_id.is_empty() {
        return Err("start.customParameters has no \"agent\": set <Parameter name=\"agent\"> in the <Stream>".into());
    }
    let opened = Opened {
        call_id: start.call_sid.clone(),
        agent_id,
        claimed_team: start.custom_parameters.get("team").cloned().unwrap_or_default(),
        channels,
    };
    let stream = Stream {
        tracks: start.tracks.clone(),
        next: vec![Leg::default(); start.tracks.len()],
    };
    Ok((opened, stream))
}

impl Stream {
    /// The packets a `media` message gives the session: silence first when
    /// its `timestamp` is past the audio received on its track, then its
    /// payload.
    pub fn media(&mut self, media: &Media) -> Result<Vec<Packet>, String> {
        let channel = self
            .tracks
            .iter()
            .position(|t| *t == media.track)
            .ok_or_else(|| format!("media for track {:?}, which start did not announce", clip(&media.track)))?;
        let timestamp: u64 = media.timestamp.parse().map_err(|_| {
            format!(
                "media.timestamp {:?} is not a number of milliseconds",
                clip(&media.timestamp)
            )
        })?;
        media
            .chunk
            .parse::<u64>()
            .map_err(|_| format!("media.chunk {:?} is not a number", clip(&media.chunk)))?;
        let payload = base64::engine::general_purpose::STANDARD
            .decode(&media.payload)
            .map_err(|e| format!("media.payload is not base64: {e}"))?;
        let leg = &mut self.next[channel];
        let mut packets = Vec::with_capacity(1);
        let reached_ms = leg.samples / (SAMPLE_RATE as u64 / 1000);
        let gap_ms = timestamp.saturating_sub(reached_ms);
        if gap_ms >= GAP_TOLERANCE_MS {
            // In 20 ms packets, as the audio would have come.
            let mut bytes = gap_ms.min(MAX_GAP_MS) * SAMPLE_RATE as u64 / 1000;
            while bytes > 0 {
                let n = bytes.min(SILENCE_PACKET);
                packets.push(Packet {
                    channel,
                    seq: leg.seq,
                    data: vec![MULAW_SILENCE; n as usize],
                });
                leg.seq += 1;
                leg.samples += n;
                bytes -= n;
            }
        }
        leg.samples += payload.len() as u64;
        packets.push(Packet {
            channel,
            seq: leg.seq,
            data: payload,
        });
        leg.seq += 1;
        Ok(packets)
    }
}

/// Caller-supplied text, cut short for an error message.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: Tracks = Tracks {
        inbound: Channel::Customer,
        outbound: Channel::Agent,
    };

    const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1",
        "start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound","outbound"],
        "customParameters":{"agent":"a17","team":"sales"},
        "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;

    fn start(text: &str) -> Start {
        match parse(text).unwrap() {
            Message::Start { start } => start,
            other => panic!("{other:?}"),
        }
    }

    fn media(track: &str, timestamp: u64, bytes: usize) -> Media {
        Media {
            track: track.into(),
            chunk: "1".into(),
            timestamp: timestamp.to_string(),
            payload: base64::engine::general_purpose::STANDARD.encode(vec![0x7Fu8; bytes]),
        }
    }

    #[test]
    fn twilios_messages_parse() {
        for text in [
            r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
            r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"x"}}"#,
            r#"{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}"#,
            r#"{"event":"stop","sequenceNumber":"9","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#,
            r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"outbound","chunk":"1","timestamp":"5","payload":"/w=="}}"#,
        ] {
            parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
        let (opened, _) = open(&start(START), MAP).unwrap();
        assert_eq!(
            opened,
            Opened {
                call_id: "CA1".into(),
                agent_id: "a17".into(),
                claimed_team: "sales".into(),
                channels: vec![Channel::Customer, Channel::Agent],
            }
        );
    }

    #[test]
    fn bad_messages_are_named() {
        let err = |text: &str| parse(text).unwrap_err();
        assert!(err("{not json").contains("malformed JSON"));
        assert!(err(r#"{"event":"dance"}"#).contains("unknown event \"dance\""));
        assert!(err(r#"{"no":"event"}"#).contains("without an \"event\""));
        assert!(err(r#"{"event":"media","media":{"track":"inbound"}}"#).contains("bad \"media\" message"));
        let wrong = |from: &str, to: &str| open(&start(&START.replace(from, to)), MAP).unwrap_err();
        assert!(wrong("audio/x-mulaw", "audio/l16").contains("only audio/x-mulaw 8000 Hz mono"));
        assert!(wrong("8000", "16000").contains("16000 Hz"));
        assert!(wrong("\"channels\":1", "\"channels\":2").contains("2 channel(s)"));
        assert!(wrong("\"agent\":\"a17\",", "").contains("no \"agent\""));
        assert!(wrong("\"outbound\"]", "\"sideways\"]").contains("unknown track"));
        assert!(wrong("\"outbound\"]", "\"inbound\"]").contains("each track once"));
        assert!(wrong("[\"inbound\",\"outbound\"]", "[]").contains("empty"));
    }

    #[test]
    fn media_becomes_packets_and_gaps_become_silence() {
        let (_, mut stream) = open(&start(START), MAP).unwrap();
        let first = stream.media(&media("outbound", 0, 160)).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].channel, first[0].seq, first[0].data.len()), (1, 0, 160));
        // 20 ms later: no gap; 4 ms of jitter is not a gap either.
        assert_eq!(stream.media(&media("outbound", 24, 160)).unwrap().len(), 1);
        // 100 ms of frames lost on this track: 100 ms of silence first.
        let after_gap = stream.media(&media("outbound", 140, 160)).unwrap();
        assert_eq!(after_gap.len(), 6);
        let silence: Vec<_> = after_gap[..5].iter().map(|p| (p.seq, p.data.len())).collect();
        assert_eq!(silence, [(2, 160), (3, 160), (4, 160), (5, 160), (6, 160)]);
        assert!(after_gap[..5]
            .iter()
            .all(|p| p.data.iter().all(|&b| b == MULAW_SILENCE)));
        assert_eq!((after_gap[5].seq, after_gap[5].data.len()), (7, 160));
        // The other track is timed on its own, and a wild jump is capped.
        let inbound = stream.media(&media("inbound", 3_600_000, 160)).unwrap();
        assert_eq!(inbound.len(), 101);
        assert!(inbound.iter().all(|p| p.channel == 0));
        assert_eq!(inbound[..100].iter().map(|p| p.data.len()).sum::<usize>(), 16_000);
        assert!(stream
            .media(&media("both", 0, 160))
            .unwrap_err()
            .contains("did not announce"));
        let mut bad = media("inbound", 0, 160);
        bad.payload = "***".into();
        assert!(stream.media(&bad).unwrap_err().contains("not base64"));
        bad = media("inbound", 0, 160);
        bad.timestamp = "soon".into();
        assert!(stream.media(&bad).unwrap_err().contains("media.timestamp"));
    }
}
