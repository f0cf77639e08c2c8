//! The gRPC service at its edges, end to end (real server, model and
//! clients): bad input refused by name while other calls go on, a dropped
//! call, health, reflection and TLS.

mod common;

use std::sync::{Arc, Mutex};

use callwatch_client::{self as client, Connection};
use callwatch_proto::pb::{self, alert_event::Event, call_update::Update, server_message::Message as Out};
use callwatch_server::server::Server;
use common::service::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

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
        resume: None,
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
    // Too large is too large, whether the packet or the whole message.
    for (what, bytes, expected) in [
        ("big packet", 66_000, "66000 bytes, over the limit of 65536"),
        ("huge message", 100_000, "over the size limit (limits.max_chunk_bytes)"),
    ] {
        let messages = vec![start_msg(what, 8000, pcm), audio_msg(0, 0, bytes)];
        let status = raw_stream(&agent, messages).await.expect_err(what);
        assert_eq!(status.code(), Code::ResourceExhausted, "{what}: {status:?}");
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
        client_ca: None,
    });
    let server = Server::start(cfg).await.unwrap();
    let tls = Connection {
        server: format!("https://localhost:{}", server.addr.port()),
        token: SUP_ALL.into(),
        ca: Some(cert_path),
        identity: None,
    };
    let (channel, bearer) = tls.channel().await.unwrap();
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
    let mut reflection = ServerReflectionClient::with_interceptor(channel, bearer);
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
