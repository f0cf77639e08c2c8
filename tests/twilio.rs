//! Twilio Media Streams into a real server on 127.0.0.1:0, through a real
//! WebSocket client (`gateway-replay`'s): a scenario call gives the same
//! alerts and scorecard as the gRPC softphone streaming it beside, the
//! configured team wins over the stream's `team` parameter, protocol
//! violations are closed with a reason while a good call goes on, and a
//! socket gone without `stop` is a dropped call.
//!
//! Run with `--nocapture` to see the per-call "frame arrival to ring"
//! figures the gateway logs, and the alert latencies printed here.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use callwatch_client::twilio::{self, Closed, Target, TwilioCall};
use callwatch_client::Connection;
use callwatch_core::audio;
use callwatch_core::capture::network::{decode, Encoding};
use callwatch_proto::pb::{self, alert_event::Event};
use callwatch_server::config::AgentEntry;
use callwatch_server::ingest::twilio::{Party, TwilioConfig};
use callwatch_server::server::Server;
use common::fixture;
use common::service::*;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

const AUTH_TOKEN: &str = "twilio-auth-token-for-tests";
const PUBLIC_URL: &str = "wss://callwatch.test/ingest/twilio";

fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("callwatch_server::ingest::twilio=info")
        .try_init();
}

async fn start_server(data: &std::path::Path) -> Server {
    let mut cfg = config(data);
    cfg.agents = vec![AgentEntry {
        id: "a17".into(),
        team: "billing".into(),
    }];
    cfg.gateways.twilio = Some(TwilioConfig {
        auth_token: AUTH_TOKEN.into(),
        public_url: PUBLIC_URL.into(),
        verify_signature: true,
        inbound: Party::Customer,
        outbound: Party::Agent,
    });
    Server::start(cfg).await.expect("the server starts")
}

fn target(server: &Server, token: Option<&str>) -> Target {
    Target {
        url: format!("ws://{}/ingest/twilio", server.addr),
        signed_url: Some(PUBLIC_URL.into()),
        auth_token: token.map(str::to_owned),
    }
}

fn twilio_call(name: &str, call_sid: &str, team: &str, fast: bool) -> TwilioCall {
    TwilioCall {
        call_sid: call_sid.into(),
        recording: audio::read_wav(&fixture(&format!("calls/{name}.wav"))).unwrap(),
        parameters: HashMap::from([("agent".into(), "a17".into()), ("team".into(), team.into())]),
        controls: Vec::new(),
        fast,
        drop_at_end: false,
    }
}

async fn get_call(c: &Connection, call_id: &str) -> pb::CallRecord {
    let mut sup = c.supervisor().await.unwrap();
    sup.get_call(pb::GetCallRequest {
        call_id: call_id.into(),
    })
    .await
    .unwrap_or_else(|s| panic!("{call_id}: {s:?}"))
    .into_inner()
}

fn scorecard(record: &pb::CallRecord) -> BTreeMap<String, String> {
    record
        .scorecard
        .iter()
        .flat_map(|s| &s.sections)
        .flat_map(|s| &s.items)
        .map(|i| (i.rule_id.clone(), i.status.clone()))
        .collect()
}

/// The alerts that stand (retracted provisional ones left out).
fn alerts(record: &pb::CallRecord) -> Vec<(String, f64)> {
    let retracted: Vec<u64> = record.retractions.iter().map(|r| r.alert_id).collect();
    let mut a: Vec<_> = record
        .alerts
        .iter()
        .filter(|a| !retracted.contains(&a.id))
        .map(|a| (a.rule_id.clone(), a.start_s))
        .collect();
    a.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)));
    a
}

/// Seconds from the end of the speech an alert is about (call time, the
/// call having started at `started`) to the alert reaching the dashboard.
fn latencies(events: &[(pb::AlertEvent, Instant)], call_id: &str, started: Instant) -> Vec<(String, f64)> {
    events
        .iter()
        .filter(|(e, _)| e.call_id == call_id)
        .filter_map(|(e, at)| match &e.event {
            Some(Event::Alert(a)) => {
                let spoken = started + Duration::from_secs_f64(a.end_s);
                Some((a.rule_id.clone(), at.saturating_duration_since(spoken).as_secs_f64()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_call_over_twilio_matches_the_softphone_and_takes_the_configured_team() {
    init_log();
    let data = tempfile::tempdir().unwrap();
    let server = start_server(data.path()).await;
    let supervisor = conn(&server, SUP_ALL);
    let feed = watch(&supervisor, "c0", 2);

    // Both paths in real time, side by side, so their latencies compare.
    let started = Instant::now();
    let grpc = {
        let c = conn(&server, AGENT_A17);
        tokio::spawn(async move {
            let mut call = call("abuse_call", "abuse-grpc", "a17", "billing");
            call.recording = telephone_band(&call.recording);
            call.fast = false;
            stream(&c, call).await
        })
    };
    // The stream claims another team: [[agents]] says a17 is billing.
    let closed = twilio::replay(
        &target(&server, Some(AUTH_TOKEN)),
        twilio_call("abuse_call", "CAabuse-twilio", "sales", false),
    )
    .await
    .expect("the Twilio stream plays");
    assert_eq!(
        closed,
        Some(Closed {
            code: 1000,
            reason: "call ended".into()
        })
    );
    let (_, ended) = grpc.await.unwrap();
    assert!(ended.is_some());
    let events = feed.await.unwrap();

    let by_grpc = get_call(&supervisor, "abuse-grpc").await;
    let by_twilio = get_call(&supervisor, "CAabuse-twilio").await;
    let info = by_twilio.call.as_ref().unwrap();
    assert_eq!((info.agent_id.as_str(), info.team.as_str()), ("a17", "billing"));
    assert_eq!(info.state, pb::CallState::Ended as i32);

    // The same alerts at the same call times: both paths carry the same
    // audio (the softphone's as linear PCM of the mu-law values), so any
    // difference is the transport's. Segment edges may differ by a VAD
    // frame with the arrival timing, within the ±0.1 s the issue allows.
    // (Against the 16 kHz original, mu-law's noise costs tiny.en words on
    // this call: "may I have your name" and "anything else" are misheard.)
    let (want, got) = (alerts(&by_grpc), alerts(&by_twilio));
    assert_eq!(
        want.iter().map(|a| &a.0).collect::<Vec<_>>(),
        got.iter().map(|a| &a.0).collect::<Vec<_>>(),
        "gRPC {want:?}, Twilio {got:?}"
    );
    for ((rule, t_grpc), (_, t_twilio)) in want.iter().zip(&got) {
        assert!(
            (t_grpc - t_twilio).abs() <= 0.1,
            "{rule}: gRPC {t_grpc} s, Twilio {t_twilio} s"
        );
    }
    assert!(got.iter().any(|a| a.0 == "language.profanity_customer"), "{got:?}");
    // And the same scorecard.
    assert_eq!(scorecard(&by_twilio), scorecard(&by_grpc));
    assert_eq!(scorecard(&by_twilio)["call.dropped"], "n/a");

    for (path, call_id) in [("gRPC", "abuse-grpc"), ("Twilio", "CAabuse-twilio")] {
        println!(
            "end of speech → alert at the dashboard, {path}: {:?}",
            latencies(&events, call_id, started)
        );
    }
    server.stop().await.unwrap();
}

/// The recording as Twilio carries it: 8 kHz, through mu-law and back.
fn telephone_band(recording: &audio::Recording) -> audio::Recording {
    let through_mulaw = |samples: &[f32]| {
        let bytes: Vec<u8> = twilio::mulaw::downsample(samples, recording.sample_rate, 8_000)
            .unwrap()
            .iter()
            .map(|&s| twilio::mulaw::encode(s))
            .collect();
        let mut back = Vec::new();
        decode(Encoding::MuLaw, &bytes, &mut back).unwrap();
        back
    };
    audio::Recording {
        sample_rate: 8_000,
        channels: recording.channels.iter().map(|(c, s)| (*c, through_mulaw(s))).collect(),
        repairs: Default::default(),
    }
}

/// A signed upgrade, the given text frames (and a binary one if asked),
/// then the server's close frame: (code, reason).
async fn violate(server: &Server, frames: Vec<Message>) -> (u16, String) {
    let mut request = format!("ws://{}/ingest/twilio", server.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "X-Twilio-Signature",
        twilio::signature(AUTH_TOKEN, PUBLIC_URL).parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("upgraded");
    for f in frames {
        if socket.send(f).await.is_err() {
            break;
        }
    }
    let close = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(frame) = socket.next().await {
            match frame {
                Ok(Message::Close(Some(c))) => return (u16::from(c.code), c.reason.to_string()),
                Ok(Message::Close(None)) | Err(_) => return (0, String::new()),
                Ok(_) => {}
            }
        }
        (0, String::new())
    })
    .await
    .expect("the server closes the stream");
    close
}

fn start_json(call_sid: &str, encoding: &str) -> String {
    serde_json::json!({"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {
        "accountSid": "AC1", "streamSid": "MZ1", "callSid": call_sid,
        "tracks": ["inbound", "outbound"],
        "customParameters": {"agent": "a17"},
        "mediaFormat": {"encoding": encoding, "sampleRate": 8000, "channels": 1}}})
    .to_string()
}

fn media_json(track: &str, payload: &str) -> String {
    serde_json::json!({"event": "media", "sequenceNumber": "2", "streamSid": "MZ1", "media": {
        "track": track, "chunk": "1", "timestamp": "0", "payload": payload}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_are_closed_with_a_reason_while_a_good_call_goes_on_and_a_lost_socket_is_dropped() {
    init_log();
    let data = tempfile::tempdir().unwrap();
    let server = start_server(data.path()).await;
    let supervisor = conn(&server, SUP_ALL);

    // A good call in real time beside everything below.
    let good = {
        let target = target(&server, Some(AUTH_TOKEN));
        tokio::spawn(async move {
            twilio::replay(&target, twilio_call("opening_closing_call", "CAgood", "billing", false)).await
        })
    };

    // No signature, or a wrong one: 403 before any audio.
    for token in [None, Some("not-the-auth-token")] {
        let err = twilio::replay(&target(&server, token), twilio_call("abuse_call", "CAforged", "", true))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("403"), "{token:?}: {err}");
    }

    let silence = base64_of(&[0xFF; 160]);
    let text = |s: String| Message::text(s);
    let cases: Vec<(&str, Vec<Message>, u16, &str)> = vec![
        (
            "malformed JSON",
            vec![text("{\"event\": ".into())],
            1007,
            "malformed JSON",
        ),
        (
            "unknown event",
            vec![text("{\"event\":\"dance\"}".into())],
            1007,
            "unknown event \"dance\"",
        ),
        (
            "wrong media format",
            vec![text(start_json("CAwav", "audio/l16"))],
            1003,
            "only audio/x-mulaw 8000 Hz mono",
        ),
        (
            "media before start",
            vec![text(media_json("inbound", &silence))],
            1002,
            "media before start",
        ),
        (
            "binary frame",
            vec![Message::binary(vec![0xFFu8; 160])],
            1003,
            "a binary frame",
        ),
        (
            "oversize frame",
            vec![text(media_json("inbound", &"A".repeat(200_000)))],
            1009,
            "over the limit",
        ),
    ];
    for (what, frames, code, reason) in cases {
        let (got_code, got_reason) = violate(&server, frames).await;
        assert_eq!(got_code, code, "{what}: {got_reason}");
        assert!(got_reason.contains(reason), "{what}: {got_reason}");
    }
    // A violation after start ends that call: its audio so far is kept.
    let (code, reason) = violate(
        &server,
        vec![
            text(start_json("CAbroken", "audio/x-mulaw")),
            text(media_json("inbound", &silence)),
            Message::binary(vec![1u8, 2, 3]),
        ],
    )
    .await;
    assert_eq!((code, reason.contains("binary")), (1002, true), "{reason}");
    let broken = get_call(&supervisor, "CAbroken").await;
    assert_ne!(broken.call.as_ref().unwrap().state, pb::CallState::Live as i32);

    // Gone without stop: a dropped call, as on gRPC.
    let mut lost = twilio_call("opening_closing_call", "CAlost", "billing", true);
    lost.drop_at_end = true;
    assert_eq!(
        twilio::replay(&target(&server, Some(AUTH_TOKEN)), lost).await.unwrap(),
        None
    );

    // The good call was untouched.
    let closed = good.await.unwrap().unwrap().expect("closed by the server");
    assert_eq!((closed.code, closed.reason.as_str()), (1000, "call ended"));
    assert_eq!(
        get_call(&supervisor, "CAgood").await.call.unwrap().state,
        pb::CallState::Ended as i32
    );
    let dropped = get_call(&supervisor, "CAlost").await;
    assert_eq!(dropped.call.as_ref().unwrap().state, pb::CallState::Dropped as i32);
    assert!(
        dropped.alerts.iter().any(|a| a.rule_id == "call.dropped"),
        "{:?}",
        alerts(&dropped)
    );
    // Nothing of the refused upgrades reached the store.
    let mut sup = supervisor.supervisor().await.unwrap();
    let forged = sup
        .get_call(pb::GetCallRequest {
            call_id: "CAforged".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(forged.code(), tonic::Code::NotFound);
    server.stop().await.unwrap();
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
