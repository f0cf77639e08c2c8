//! The gRPC service end to end: a real server on 127.0.0.1:0 with the real
//! model, real clients over loopback, a real store on disk.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callwatch_client::{self as client, Connection, SoftphoneCall, WatchFilter};
use callwatch_core::audio;
use callwatch_core::rules::sidecar;
use callwatch_core::text::word_error_rate;
use callwatch_proto::pb::{self, alert_event::Event, call_update::Update, server_message::Message as Out};
use callwatch_server::config::{ServeConfig, TokenEntry};
use callwatch_server::server::Server;
use common::{fixture, q8_model, Reference};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const AGENT_A17: &str = "token-agent-a17";
const AGENT_B22: &str = "token-agent-b22";
const SUP_BILLING: &str = "token-sup-billing";
const SUP_BILLING_2: &str = "token-sup-billing-kim";
const SUP_SALES: &str = "token-sup-sales";
const SUP_ALL: &str = "token-sup-all";
const ADMIN: &str = "token-admin";

fn config(data: &Path) -> ServeConfig {
    let token = |token: &str, role: &str, name: &str| TokenEntry {
        token: token.into(),
        role: role.into(),
        name: Some(name.into()),
    };
    let mut cfg = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: data.to_owned(),
        model: Some(q8_model()),
        workers: 2,
        rules: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml")),
        ..ServeConfig::default()
    };
    cfg.auth.tokens = vec![
        token(AGENT_A17, "agent:a17", "Alex"),
        token(AGENT_B22, "agent:b22", "Bo"),
        token(SUP_BILLING, "supervisor:billing", "Sam"),
        token(SUP_BILLING_2, "supervisor:billing", "Kim"),
        token(SUP_SALES, "supervisor:sales", "Lee"),
        token(SUP_ALL, "supervisor:*", "Pat"),
        token(ADMIN, "admin", "root"),
    ];
    cfg
}

async fn start(data: &Path) -> Server {
    Server::start(config(data)).await.expect("the server starts")
}

fn conn(server: &Server, token: &str) -> Connection {
    Connection {
        server: format!("http://{}", server.addr),
        token: token.into(),
        ca: None,
    }
}

/// A scenario call as a softphone streams it, with its sidecar events.
fn call(name: &str, call_id: &str, agent: &str, team: &str) -> SoftphoneCall {
    let wav = fixture(&format!("calls/{name}.wav"));
    SoftphoneCall {
        call_id: call_id.into(),
        agent_id: agent.into(),
        team: team.into(),
        recording: audio::read_wav(&wav).unwrap(),
        controls: sidecar::beside(&wav).unwrap(),
        fast: true,
        drop_at_end: false,
    }
}

/// Streams a call; returns everything the softphone received, and the end.
async fn stream(c: &Connection, call: SoftphoneCall) -> (Vec<pb::ServerMessage>, Option<pb::CallEnded>) {
    let mut received = Vec::new();
    let ended = client::softphone(c, call, |m| received.push(m.clone()))
        .await
        .expect("the call streams");
    (received, ended)
}

/// Follows the feed from `after` until `calls` calls have ended.
fn watch(c: &Connection, after: &str, calls: usize) -> tokio::task::JoinHandle<Vec<(pb::AlertEvent, Instant)>> {
    let (c, after) = (c.clone(), after.to_owned());
    tokio::spawn(async move {
        let mut events = Vec::new();
        client::watch(&c, WatchFilter::default(), after, Some(calls), |e| {
            events.push((e.clone(), Instant::now()))
        })
        .await
        .expect("the feed follows");
        events
    })
}

fn describe(e: &pb::AlertEvent) -> String {
    match e.event.as_ref().unwrap() {
        Event::Alert(a) => format!("alert {}", a.rule_id),
        Event::Retraction(r) => format!("retraction {}", r.alert_id),
        Event::Acknowledgement(a) => format!("ack {} by {}", a.alert_id, a.by),
        Event::CallStarted(_) => "call_started".into(),
        Event::CallEnded(_) => "call_ended".into(),
    }
}

fn nudges(messages: &[pb::ServerMessage]) -> Vec<pb::Alert> {
    messages
        .iter()
        .filter_map(|m| match &m.message {
            Some(Out::Nudge(a)) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    result.err().expect("the request is refused").code()
}

fn cursor(e: &pb::AlertEvent) -> i64 {
    e.cursor[1..].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_call_nudges_the_agent_alerts_supervisors_and_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path()).await;
    let supervisor = conn(&server, SUP_BILLING);
    let feed = watch(&supervisor, "c0", 1);

    let (received, ended) = stream(
        &conn(&server, AGENT_A17),
        call("hold_violation_call", "hv-1", "a17", "billing"),
    )
    .await;

    // The agent: accepted, then its nudges in order, in call time, then the end.
    assert!(matches!(
        received.first().and_then(|m| m.message.as_ref()),
        Some(Out::Accepted(_))
    ));
    let agent: Vec<_> = nudges(&received)
        .iter()
        .map(|a| (a.rule_id.clone(), a.start_s))
        .collect();
    assert_eq!(agent.len(), 2, "{agent:?}");
    for ((rule, t), (want_rule, want_t)) in agent
        .iter()
        .zip([("hold.permission", 18.7), ("hold.thank_on_return", 23.0)])
    {
        assert_eq!(rule, want_rule);
        assert!((t - want_t).abs() <= 1.0, "{rule} at {t} s, expected near {want_t} s");
    }
    let ended = ended.expect("the call ended cleanly");
    assert_eq!(ended.call.as_ref().unwrap().state, pb::CallState::Ended as i32);

    // The supervisor: the same alerts, between the call's start and end, in order.
    let events = feed.await.unwrap();
    let kinds: Vec<_> = events.iter().map(|(e, _)| describe(e)).collect();
    assert_eq!(
        kinds,
        [
            "call_started",
            "alert hold.permission",
            "alert hold.thank_on_return",
            "call_ended"
        ]
    );
    assert!(events.windows(2).all(|w| cursor(&w[0].0) < cursor(&w[1].0)));
    assert!(events
        .iter()
        .all(|(e, _)| e.call_id == "hv-1" && e.team == "billing" && e.agent_id == "a17"));
    assert!(events.windows(2).all(|w| w[0].0.at_unix_ms <= w[1].0.at_unix_ms));

    // The store: transcript and scorecard.
    let mut sup = supervisor.supervisor().await.unwrap();
    let record = sup
        .get_call(pb::GetCallRequest { call_id: "hv-1".into() })
        .await
        .unwrap()
        .into_inner();
    // The stored transcript is the call's (accuracy itself is tested in
    // tests/live.rs; espeak's voices cost tiny.en some words here).
    let reference = Reference::load("calls/hold_violation_call.wav");
    let said = format!("{} {}", reference.text_of("agent"), reference.text_of("customer"));
    let heard = |channel: pb::Channel| {
        record
            .transcript
            .iter()
            .filter(|t| t.channel == channel as i32)
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let heard = format!("{} {}", heard(pb::Channel::Agent), heard(pb::Channel::Customer));
    let wer = word_error_rate(&said, &heard);
    assert!(wer <= 0.25, "WER {wer:.2}: {heard}");
    let card = record.scorecard.unwrap();
    assert!(card.is_final);
    let status = |rule: &str| {
        card.sections
            .iter()
            .flat_map(|s| &s.items)
            .find(|i| i.rule_id == rule)
            .map(|i| i.status.clone())
    };
    assert_eq!(status("hold.permission").as_deref(), Some("fail"));
    assert_eq!(status("closing.further_assistance").as_deref(), Some("pass"));
    assert_eq!(record.alerts.len(), 2);

    // Restart: a dashboard resuming after the first alert gets the rest,
    // from the store, then new events live, nothing repeated.
    server.stop().await.unwrap();
    let server = start(data.path()).await;
    let supervisor = conn(&server, SUP_BILLING);
    let first_alert = &events[1].0.cursor;
    let resumed = watch(&supervisor, first_alert, 2);
    stream(
        &conn(&server, AGENT_A17),
        call("abuse_call", "abuse-1", "a17", "billing"),
    )
    .await;
    let resumed: Vec<_> = resumed.await.unwrap().into_iter().map(|(e, _)| e).collect();
    let kinds: Vec<_> = resumed.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "alert hold.thank_on_return",
            "call_ended",
            "call_started",
            "alert language.profanity_customer",
            "alert language.profanity_customer",
            "call_ended"
        ]
    );
    assert_eq!(resumed[0].cursor, events[2].0.cursor);
    assert!(resumed.windows(2).all(|w| cursor(&w[0]) < cursor(&w[1])));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_dashboard_delays_no_one_and_catches_up_from_the_store() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.limits.subscriber_queue = 2;
    let server = Server::start(cfg).await.unwrap();
    let supervisor = conn(&server, SUP_BILLING);

    // A dashboard that subscribes and then reads nothing, over a connection
    // with a tiny HTTP/2 window so that the server's queues fill.
    let channel = tonic::transport::Endpoint::from_shared(supervisor.server.clone())
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .initial_connection_window_size(Some(1024))
        .connect()
        .await
        .unwrap();
    let (_, bearer) = supervisor.channel().await.unwrap();
    let mut stalled_client = pb::supervisor_client::SupervisorClient::with_interceptor(channel, bearer);
    let mut stalled = stalled_client
        .watch_alerts(pb::WatchAlertsRequest {
            resume_after: "c0".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let reader = watch(&supervisor, "c0", 3);
    let agent = conn(&server, AGENT_A17);
    for (n, name) in ["abuse_call", "jargon_call", "opening_closing_call"].iter().enumerate() {
        stream(&agent, call(name, &format!("stall-{n}"), "a17", "billing")).await;
    }
    let live = reader.await.unwrap();
    assert!(live.len() >= 14, "{} events", live.len());
    // The reading dashboard got every event as it was recorded.
    for (event, arrived) in &live {
        let recorded_ms = event.at_unix_ms;
        let lag_ms = callwatch_core::time::now_unix_ms() - recorded_ms - arrived.elapsed().as_millis() as i64;
        assert!(
            lag_ms < 1000,
            "{} arrived {lag_ms} ms after it was recorded",
            describe(event)
        );
    }
    assert!(server.feed().lagged() >= 1, "the stalled dashboard was never cut off");

    // The stalled one now reads: everything, in order, exactly once.
    let mut caught_up = Vec::new();
    while caught_up.len() < live.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), stalled.message())
            .await
            .expect("the stalled dashboard catches up")
            .unwrap()
            .unwrap();
        caught_up.push(event.cursor);
    }
    let expected: Vec<_> = live.iter().map(|(e, _)| e.cursor.clone()).collect();
    assert_eq!(caught_up, expected);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_reaches_only_its_scope() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path()).await;

    // No token, an unknown token.
    let mut anonymous = pb::supervisor_client::SupervisorClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    assert_eq!(
        code(anonymous.list_calls(pb::ListCallsRequest::default()).await),
        Code::Unauthenticated
    );
    let mut stranger = conn(&server, "not-a-token").supervisor().await.unwrap();
    assert_eq!(
        code(stranger.list_calls(pb::ListCallsRequest::default()).await),
        Code::Unauthenticated
    );

    // Agents stream only their own calls and cannot watch.
    let err = client::softphone(
        &conn(&server, AGENT_A17),
        call("silence_call", "x-1", "b22", "sales"),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("PermissionDenied"), "{err:#}");
    let mut agent = conn(&server, AGENT_A17).supervisor().await.unwrap();
    assert_eq!(
        code(agent.list_calls(pb::ListCallsRequest::default()).await),
        Code::PermissionDenied
    );

    // One call per team.
    stream(
        &conn(&server, AGENT_A17),
        call("silence_call", "bill-1", "a17", "billing"),
    )
    .await;
    stream(
        &conn(&server, AGENT_B22),
        call("talk_over_call", "sale-1", "b22", "sales"),
    )
    .await;

    let mut billing = conn(&server, SUP_BILLING).supervisor().await.unwrap();
    let listed = billing
        .list_calls(pb::ListCallsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.calls.iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>(),
        ["bill-1"]
    );
    let listed = conn(&server, SUP_ALL)
        .supervisor()
        .await
        .unwrap()
        .list_calls(pb::ListCallsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.calls.len(), 2);
    assert_eq!(
        code(
            billing
                .list_calls(pb::ListCallsRequest {
                    team: "sales".into(),
                    recent: 0
                })
                .await
        ),
        Code::PermissionDenied
    );
    let denied = billing
        .get_call(pb::GetCallRequest {
            call_id: "sale-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = billing
        .watch_alerts(pb::WatchAlertsRequest {
            team: "sales".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Claims: only within the team, and only once.
    let sales_alert = conn(&server, SUP_SALES)
        .supervisor()
        .await
        .unwrap()
        .get_call(pb::GetCallRequest {
            call_id: "sale-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .alerts[0]
        .id;
    let ack = |call_id: &str, alert_id| pb::AcknowledgeAlertRequest {
        call_id: call_id.into(),
        alert_id,
        note: "on it".into(),
    };
    let denied = billing.acknowledge_alert(ack("sale-1", sales_alert)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let billing_alert = billing
        .get_call(pb::GetCallRequest {
            call_id: "bill-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .alerts[0]
        .id;
    let claimed = billing
        .acknowledge_alert(ack("bill-1", billing_alert))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claimed.by, "Sam");
    let mut kim = conn(&server, SUP_BILLING_2).supervisor().await.unwrap();
    let taken = kim.acknowledge_alert(ack("bill-1", billing_alert)).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert!(taken.message().contains("claimed by Sam"), "{}", taken.message());
    assert_eq!(
        kim.acknowledge_alert(ack("bill-1", 999)).await.unwrap_err().code(),
        Code::NotFound
    );
    // Others see who claimed it, in the feed and in the call's record.
    let record = kim
        .get_call(pb::GetCallRequest {
            call_id: "bill-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(record.acknowledgements.len(), 1);
    assert_eq!(record.acknowledgements[0].by, "Sam");

    // Rules: only the admin; a broken file is refused and the rules stay.
    let reload = |path: &Path| pb::ReloadRulesRequest {
        path: path.display().to_string(),
    };
    let mut sup_admin = conn(&server, SUP_ALL).admin().await.unwrap();
    assert_eq!(
        sup_admin.get_rules(pb::GetRulesRequest {}).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let mut admin = conn(&server, ADMIN).admin().await.unwrap();
    let before = admin.get_rules(pb::GetRulesRequest {}).await.unwrap().into_inner();
    assert!(before.rule_ids.iter().any(|r| r == "call.dropped"));
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "version = 1\n\n[[rule]]\nid = \"x\"\nkind = \"nonsense\"\n").unwrap();
    let refused = admin.reload_rules(reload(&broken)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("broken.toml:3"), "{}", refused.message());
    let after = admin.get_rules(pb::GetRulesRequest {}).await.unwrap().into_inner();
    assert_eq!(after.rule_ids, before.rule_ids);

    let small = dir.path().join("small.toml");
    let default = std::fs::read_to_string(&before.path).unwrap();
    let dropped_rule = &default[default.find("[[rule]]\nid = \"call.dropped\"").unwrap()..];
    std::fs::write(&small, format!("version = 1\n\n{dropped_rule}")).unwrap();
    let reloaded = admin.reload_rules(reload(&small)).await.unwrap().into_inner();
    assert_eq!(reloaded.rule_ids, ["call.dropped"]);
    // New calls get the new rules.
    let (_, ended) = stream(
        &conn(&server, AGENT_A17),
        call("silence_call", "bill-2", "a17", "billing"),
    )
    .await;
    let card = ended.unwrap().scorecard.unwrap();
    assert_eq!(card.sections.iter().map(|s| s.items.len()).sum::<usize>(), 1);
    server.stop().await.unwrap();
}

/// Sends `messages` on a raw ingest stream and returns how it ended.
async fn raw_stream(
    c: &Connection,
    messages: Vec<pb::client_message::Message>,
) -> Result<Vec<pb::ServerMessage>, tonic::Status> {
    let mut ingest = c.ingest().await.unwrap();
    let (tx, rx) = mpsc::channel(messages.len().max(1));
    for m in messages {
        tx.send(pb::ClientMessage { message: Some(m) }).await.unwrap();
    }
    drop(tx);
    let mut responses = ingest.stream_call(ReceiverStream::new(rx)).await?.into_inner();
    let mut received = Vec::new();
    while let Some(m) = responses.message().await? {
        received.push(m);
    }
    Ok(received)
}

fn start_msg(call_id: &str, rate: u32, encoding: i32) -> pb::client_message::Message {
    pb::client_message::Message::Start(pb::CallStart {
        call_id: call_id.into(),
        agent_id: "a17".into(),
        team: "billing".into(),
        sample_rate: rate,
        encoding,
        channels: vec![pb::Channel::Agent as i32, pb::Channel::Customer as i32],
    })
}

fn audio_msg(channel: u32, seq: u64, bytes: usize) -> pb::client_message::Message {
    pb::client_message::Message::Audio(pb::Audio {
        channel,
        seq,
        data: vec![0; bytes],
    })
}

fn end_msg() -> pb::client_message::Message {
    pb::client_message::Message::Control(pb::CallControl {
        action: pb::call_control::Action::End as i32,
        transfer_to: String::new(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_by_name_and_other_calls_go_on() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path()).await;
    let agent = conn(&server, AGENT_A17);
    // A good call streams beside all the bad ones.
    let good = {
        let agent = agent.clone();
        tokio::spawn(async move { stream(&agent, call("talk_over_call", "good-1", "a17", "billing")).await })
    };
    let pcm = pb::Encoding::Pcm16le as i32;
    let cases: Vec<(&str, Vec<pb::client_message::Message>, &str)> = vec![
        ("audio first", vec![audio_msg(0, 0, 320)], "audio before CallStart"),
        ("bad encoding", vec![start_msg("b-enc", 8000, 9)], "unknown encoding 9"),
        (
            "slow rate",
            vec![start_msg("b-low", 4000, pcm)],
            "4000 Hz is outside 8000–48000 Hz",
        ),
        (
            "fast rate",
            vec![start_msg("b-high", 96_000, pcm)],
            "96000 Hz is outside",
        ),
        (
            "odd bytes",
            vec![
                start_msg("b-odd", 8000, pcm),
                audio_msg(0, 0, 320),
                audio_msg(1, 0, 321),
            ],
            "audio packet 0 of channel 1: 321 bytes is not a whole number of Pcm16Le samples",
        ),
        (
            "huge packet",
            vec![start_msg("b-huge", 8000, pcm), audio_msg(0, 0, 100_000)],
            "100000 bytes, over the limit of 65536",
        ),
        (
            "no channel 2",
            vec![start_msg("b-ch", 8000, pcm), audio_msg(2, 0, 320)],
            "audio for channel 2",
        ),
        (
            "second start",
            vec![start_msg("b-twice", 8000, pcm), start_msg("b-twice", 8000, pcm)],
            "a second CallStart",
        ),
    ];
    for (what, messages, expected) in cases {
        let status = raw_stream(&agent, messages).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(status.message().contains(expected), "{what}: {:?}", status.message());
    }

    // Gaps and repeats are counted and reported, not fatal.
    let received = raw_stream(
        &agent,
        vec![
            start_msg("b-seq", 8000, pcm),
            audio_msg(0, 0, 320),
            audio_msg(1, 0, 320),
            audio_msg(0, 2, 320),
            audio_msg(0, 2, 320),
            end_msg(),
        ],
    )
    .await
    .unwrap();
    let last_ack = received
        .iter()
        .filter_map(|m| match &m.message {
            Some(Out::Ack(a)) => Some(a.clone()),
            _ => None,
        })
        .next_back()
        .unwrap();
    assert_eq!((last_ack.gaps, last_ack.repeats), (vec![1, 0], vec![1, 0]));
    assert!(matches!(received.last().unwrap().message, Some(Out::Ended(_))));

    // An aborted call keeps what was accepted, with the reason.
    let mut sup = conn(&server, SUP_BILLING).supervisor().await.unwrap();
    let odd = sup
        .get_call(pb::GetCallRequest {
            call_id: "b-odd".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let info = odd.call.unwrap();
    assert_eq!(info.state, pb::CallState::Aborted as i32);
    assert!(info.reason.contains("321 bytes"), "{}", info.reason);
    assert!(odd.scorecard.unwrap().is_final);

    let missing = sup
        .watch_call(pb::WatchCallRequest { call_id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(
        (missing.code(), missing.message()),
        (Code::NotFound, "no call \"nope\"")
    );
    let bad_cursor = sup
        .watch_alerts(pb::WatchAlertsRequest {
            resume_after: "yesterday".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_cursor.code(), Code::InvalidArgument);
    assert!(bad_cursor.message().contains("malformed cursor \"yesterday\""));

    let (received, ended) = good.await.unwrap();
    assert_eq!(ended.unwrap().call.unwrap().state, pb::CallState::Ended as i32);
    assert_eq!(
        nudges(&received).iter().map(|a| a.rule_id.as_str()).collect::<Vec<_>>(),
        ["talk_over.agent_interrupts"]
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_is_marked_and_raises_the_callback_alert_while_watchers_see_it_live() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path()).await;
    let supervisor = conn(&server, SUP_BILLING);
    let feed = watch(&supervisor, "c0", 1);

    // Watch the call itself from the moment it is accepted.
    let updates = Arc::new(Mutex::new(Vec::new()));
    let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
    let watcher = {
        let (supervisor, updates) = (supervisor.clone(), updates.clone());
        tokio::spawn(async move {
            accepted_rx.await.unwrap();
            let mut sup = supervisor.supervisor().await.unwrap();
            let mut stream = sup
                .watch_call(pb::WatchCallRequest {
                    call_id: "drop-1".into(),
                })
                .await
                .unwrap()
                .into_inner();
            while let Some(u) = stream.message().await.unwrap() {
                updates.lock().unwrap().push(u.update.unwrap());
            }
        })
    };
    let mut accepted_tx = Some(accepted_tx);
    let mut dropped = call("hold_violation_call", "drop-1", "a17", "billing");
    dropped.drop_at_end = true;
    let ended = client::softphone(&conn(&server, AGENT_A17), dropped, |_| {
        if let Some(tx) = accepted_tx.take() {
            let _ = tx.send(());
        }
    })
    .await
    .unwrap();
    // This softphone still listens after closing its side, so it hears the end.
    assert_eq!(ended.unwrap().call.unwrap().state, pb::CallState::Dropped as i32);

    let events = feed.await.unwrap();
    let dropped_alert = events
        .iter()
        .find_map(|(e, _)| match &e.event {
            Some(Event::Alert(a)) if a.rule_id == "call.dropped" => Some(a.clone()),
            _ => None,
        })
        .expect("the dropped-call alert");
    assert_eq!(dropped_alert.severity, pb::Severity::Critical as i32);
    assert!(dropped_alert.for_agent && dropped_alert.for_supervisor);
    let Some(Event::CallEnded(end)) = &events.last().unwrap().0.event else {
        panic!("no call end")
    };
    assert_eq!(end.call.as_ref().unwrap().state, pb::CallState::Dropped as i32);

    watcher.await.unwrap();
    let updates = std::mem::take(&mut *updates.lock().unwrap());
    let finals = updates
        .iter()
        .filter(|u| matches!(u, Update::Transcript(t) if t.is_final))
        .count();
    assert!(finals >= 8, "{finals} final transcripts");
    assert!(updates.iter().any(|u| matches!(u, Update::Voice(v) if v.speaking)));
    assert!(updates
        .iter()
        .any(|u| matches!(u, Update::Alert(a) if a.rule_id == "call.dropped")));
    assert!(matches!(updates.last(), Some(Update::Call(c)) if c.state == pb::CallState::Dropped as i32));
    let cards: Vec<_> = updates
        .iter()
        .filter_map(|u| match u {
            Update::Scorecard(c) => Some(c),
            _ => None,
        })
        .collect();
    assert!(cards.len() >= 2, "the scorecard fills in live");
    assert!(cards.last().unwrap().is_final);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let mut cfg = config(&dir.path().join("data"));
    cfg.tls = Some(callwatch_server::config::TlsFiles {
        cert: cert_path.clone(),
        key: key_path,
    });
    let server = Server::start(cfg).await.unwrap();
    let tls = Connection {
        server: format!("https://localhost:{}", server.addr.port()),
        token: SUP_ALL.into(),
        ca: Some(cert_path),
    };
    let (channel, _) = tls.channel().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "callwatch.v1.CallIngest".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let calls = tls
        .supervisor()
        .await
        .unwrap()
        .list_calls(pb::ListCallsRequest::default())
        .await;
    assert!(calls.unwrap().into_inner().calls.is_empty());

    // Reflection lists the services for generic tools.
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = replies.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in [
        "callwatch.v1.CallIngest",
        "callwatch.v1.Supervisor",
        "callwatch.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&service), "{names:?}");
    }

    // Plain text to a TLS server does not get through.
    let plain = Connection {
        server: format!("http://127.0.0.1:{}", server.addr.port()),
        ..tls
    };
    let refused = match plain.supervisor().await {
        Ok(mut c) => c.list_calls(pb::ListCallsRequest::default()).await.is_err(),
        Err(_) => true,
    };
    assert!(refused);
    server.stop().await.unwrap();
}
