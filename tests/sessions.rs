//! Call sessions end to end: the transport-free session API used in
//! process, the transcript filter on every exit, the live-call slots under a
//! burst of starts, and shutdown. A real server on 127.0.0.1:0 with the real
//! model; real clients over loopback where a transport is part of the test.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callwatch_client::{self as client, SoftphoneCall, WatchFilter};
use callwatch_core::audio::{self, Channel, Recording};
use callwatch_core::capture::network::Encoding;
use callwatch_core::capture::SourceFormat;
use callwatch_core::redact::Redacted;
use callwatch_core::rules::config::ControlKind;
use callwatch_core::rules::sidecar;
use callwatch_proto::pb::{self, alert_event::Event, call_update::Update, server_message::Message as Out};
use callwatch_server::server::Server;
use callwatch_server::session::{self, CallFilter, CallSpec, Ending, Outgoing, TranscriptFilter};
use common::service::{config, conn, AGENT_A17 as AGENT, SUP_ALL as SUPERVISOR};
use common::{fixture, Reference};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

fn recording(name: &str) -> (Recording, Vec<callwatch_core::rules::Control>) {
    let wav = fixture(&format!("calls/{name}.wav"));
    (audio::read_wav(&wav).unwrap(), sidecar::beside(&wav).unwrap())
}

/// Collects a session's replies until its last.
fn collect(mut replies: mpsc::Receiver<Outgoing>) -> tokio::task::JoinHandle<Vec<Outgoing>> {
    tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(r) = replies.recv().await {
            all.push(r);
        }
        all
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_adapter_gets_the_softphones_call_and_a_stop_just_after_its_end_keeps_it_whole() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(config(data.path())).await.unwrap();
    let shared = server.shared().clone();
    let (rec, controls) = recording("hold_violation_call");

    // An adapter with no transport: the session API alone, f32 samples in
    // 20 ms packets, call control when the audio reaches it.
    let spec = CallSpec {
        call_id: "in-process-1".into(),
        agent_id: "a17".into(),
        team: "billing".into(),
        format: SourceFormat {
            sample_rate: rec.sample_rate,
            channels: rec.channels.iter().map(|(c, _)| *c).collect(),
        },
        encoding: Encoding::F32Le,
    };
    let (mut call, replies) = session::open(&shared, spec.clone()).await.unwrap();
    assert_eq!(call.info().state, pb::CallState::Live as i32);
    let replies = collect(replies);
    // The same call id cannot stream twice.
    assert!(matches!(
        session::open(&shared, spec).await.err(),
        Some(session::Refusal::Live(id)) if id == "in-process-1"
    ));
    let packet = rec.sample_rate as usize / 50;
    let mut controls = controls.into_iter().peekable();
    for (seq, start) in (0..rec.channels[0].1.len()).step_by(packet).enumerate() {
        while let Some(c) = controls.next_if(|c| c.t_s <= start as f64 / rec.sample_rate as f64) {
            call.control(c.kind, c.to).await;
        }
        for (ch, (_, samples)) in rec.channels.iter().enumerate() {
            let bytes: Vec<u8> = samples[start..(start + packet).min(samples.len())]
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect();
            call.audio(ch, seq as u64, &bytes).await.unwrap();
        }
    }
    let received_s = call.receipt().received_s;
    assert!((received_s - rec.duration_s()).abs() < 0.05, "{received_s}");
    call.control(ControlKind::End, None).await;
    call.finish(Ending::Ended);

    // Stopping now: the call has ended, its last audio is still being
    // decoded, and it finishes inside the grace.
    let stopping = Instant::now();
    let unfinished = server.stop().await.unwrap();
    let stop_s = stopping.elapsed().as_secs_f64();
    println!("stop right after the end: {stop_s:.2} s");
    assert!(unfinished.is_empty(), "{unfinished:?}");
    assert!(stop_s < 10.0, "{stop_s} s");

    let replies = replies.await.unwrap();
    assert!(matches!(replies.first(), Some(Outgoing::Accepted(info)) if info.call_id == "in-process-1"));
    assert!(replies
        .iter()
        .any(|r| matches!(r, Outgoing::Ack(a) if a.received_s == received_s)));
    let nudges: Vec<_> = replies
        .iter()
        .filter_map(|r| match r {
            Outgoing::Nudge(a) => Some((a.rule_id.as_str(), a.start_s)),
            _ => None,
        })
        .collect();
    assert_eq!(nudges.len(), 2, "{nudges:?}");
    for ((rule, t), (want_rule, want_t)) in nudges
        .iter()
        .zip([("hold.permission", 18.7), ("hold.thank_on_return", 23.0)])
    {
        assert_eq!(*rule, want_rule);
        assert!((t - want_t).abs() <= 1.0, "{rule} at {t} s, expected near {want_t} s");
    }
    let Some(Outgoing::Ended(ended)) = replies.last() else {
        panic!("the last reply is the end: {:?}", replies.last())
    };
    assert_eq!(ended.call.as_ref().unwrap().state, pb::CallState::Ended as i32);

    // Stored whole: ended, with finals up to the last words said.
    let record = shared.store.record("in-process-1").unwrap().expect("stored");
    let info = record.call.unwrap();
    assert_eq!(info.state, pb::CallState::Ended as i32);
    assert!((info.audio_s - rec.duration_s()).abs() < 0.1, "{} s", info.audio_s);
    let last_said = Reference::load("calls/hold_violation_call.wav")
        .utterances
        .iter()
        .map(|u| u.end_s)
        .fold(0.0, f64::max);
    let last_heard = record.transcript.iter().map(|t| t.end_s).fold(0.0, f64::max);
    assert!(
        last_heard >= last_said - 1.0,
        "finals end at {last_heard} s; the call at {last_said} s"
    );
    assert!(shared.calls.is_empty() && shared.sessions.running() == 0);
}

/// Masks every letter and digit: nothing readable may get past it.
struct Mask;

impl TranscriptFilter for Mask {
    fn for_call(&self) -> Box<dyn CallFilter> {
        Box::new(Mask)
    }
}

impl CallFilter for Mask {
    fn revision(&mut self, _: Channel, _: bool, text: &str) -> Redacted {
        Redacted {
            text: self.evidence(text),
            spans: Vec::new(),
        }
    }

    fn evidence(&self, text: &str) -> String {
        text.chars()
            .map(|c| if c.is_alphanumeric() { '*' } else { c })
            .collect()
    }
}

fn masked(text: &str) -> bool {
    !text.chars().any(char::is_alphanumeric)
}

fn scorecard_masked(card: &pb::Scorecard) -> bool {
    card.sections.iter().flat_map(|s| &s.items).all(|i| masked(&i.evidence))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_word_leaving_a_session_passes_its_transcript_filter_and_the_rules_still_hear_them() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_filtered(config(data.path()), Arc::new(Mask))
        .await
        .unwrap();
    let supervisor = conn(&server, SUPERVISOR);
    let agent = conn(&server, AGENT);

    // The agent's panel and the supervisors' feed, before the call.
    let (channel, bearer) = agent.channel().await.unwrap();
    let mut desk = pb::agent_desk_client::AgentDeskClient::with_interceptor(channel, bearer)
        .watch_nudges(pb::WatchNudgesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let feed = {
        let supervisor = supervisor.clone();
        tokio::spawn(async move {
            let mut events = Vec::new();
            client::watch(&supervisor, WatchFilter::default(), "c0".into(), Some(1), |e| {
                events.push(e.clone())
            })
            .await
            .unwrap();
            events
        })
    };
    // The call's watcher, from the moment it is accepted.
    let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
    let updates = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (supervisor, updates) = (supervisor.clone(), updates.clone());
        tokio::spawn(async move {
            accepted_rx.await.unwrap();
            let mut stream = supervisor
                .supervisor()
                .await
                .unwrap()
                .watch_call(pb::WatchCallRequest {
                    call_id: "masked-1".into(),
                })
                .await
                .unwrap()
                .into_inner();
            while let Some(u) = stream.message().await.unwrap() {
                updates.lock().unwrap().push(u.update.unwrap());
            }
        })
    };
    let (rec, controls) = recording("jargon_call");
    let mut accepted_tx = Some(accepted_tx);
    let mut softphone = Vec::new();
    let ended = client::softphone(
        &agent,
        SoftphoneCall {
            call_id: "masked-1".into(),
            agent_id: "a17".into(),
            team: "billing".into(),
            recording: rec,
            controls,
            fast: true,
            drop_at_end: false,
        },
        |m| {
            softphone.push(m.clone());
            if let Some(tx) = accepted_tx.take() {
                let _ = tx.send(());
            }
        },
    )
    .await
    .unwrap()
    .expect("the call ends");

    // The rules heard the words: the jargon alerts are raised.
    let events = feed.await.unwrap();
    let alerts: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Alert(a)) => Some(a.clone()),
            _ => None,
        })
        .collect();
    assert!(alerts.iter().any(|a| a.rule_id == "language.jargon"), "{alerts:?}");
    // The feed: alert evidence and the final scorecard, masked.
    assert!(alerts.iter().all(|a| masked(&a.evidence)), "{alerts:?}");
    assert!(alerts.iter().any(|a| !a.evidence.is_empty()));
    let Some(Event::CallEnded(end)) = &events.last().unwrap().event else {
        panic!("no call end")
    };
    assert!(scorecard_masked(end.scorecard.as_ref().unwrap()));
    // The softphone: nudges and the end, masked.
    let nudges: Vec<_> = softphone
        .iter()
        .filter_map(|m| match &m.message {
            Some(Out::Nudge(a)) => Some(a.clone()),
            _ => None,
        })
        .collect();
    assert!(nudges.iter().any(|a| a.rule_id == "language.jargon"));
    assert!(nudges.iter().all(|a| masked(&a.evidence)), "{nudges:?}");
    assert!(scorecard_masked(ended.scorecard.as_ref().unwrap()));
    // The agent's panel: the same nudges, masked.
    let mut panel = Vec::new();
    while panel.len() < nudges.len() {
        match tokio::time::timeout(Duration::from_secs(5), desk.message()).await {
            Ok(Ok(Some(pb::AgentUpdate {
                update: Some(pb::agent_update::Update::Nudge(a)),
            }))) => panel.push(a),
            Ok(Ok(Some(_))) => {}
            other => panic!("the panel stopped early: {other:?}"),
        }
    }
    assert!(panel.iter().all(|a| masked(&a.evidence)));
    assert_eq!(panel.len(), nudges.len());
    // The call's watcher: transcripts, alerts and scorecards, masked.
    watcher.await.unwrap();
    let updates = std::mem::take(&mut *updates.lock().unwrap());
    let texts: Vec<_> = updates
        .iter()
        .filter_map(|u| match u {
            Update::Transcript(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect();
    assert!(texts.len() >= 5 && texts.iter().all(|t| masked(t)), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains('*')));
    for u in &updates {
        match u {
            Update::Alert(a) => assert!(masked(&a.evidence), "{a:?}"),
            Update::Scorecard(c) => assert!(scorecard_masked(c), "{c:?}"),
            _ => {}
        }
    }
    // The store: transcript, alerts and scorecard, masked.
    let record = supervisor
        .supervisor()
        .await
        .unwrap()
        .get_call(pb::GetCallRequest {
            call_id: "masked-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!record.transcript.is_empty() && record.transcript.iter().all(|t| masked(&t.text)));
    assert!(!record.alerts.is_empty() && record.alerts.iter().all(|a| masked(&a.evidence)));
    assert!(scorecard_masked(record.scorecard.as_ref().unwrap()));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_simultaneous_starts_never_exceed_max_calls() {
    const MAX: usize = 8;
    const STARTS: usize = 100;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.limits.max_calls = MAX;
    let server = Server::start(cfg).await.unwrap();
    let shared = server.shared().clone();
    let agent = conn(&server, AGENT);

    // Sample the live calls as the wall sees them (ListCalls), and the
    // registry and slots in process (as often as a thread can), while the
    // starts run.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let listing = {
        let (supervisor, sampling) = (conn(&server, SUPERVISOR), sampling.clone());
        tokio::spawn(async move {
            let mut sup = supervisor.supervisor().await.unwrap();
            let (mut most, mut samples) = (0, 0);
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let calls = sup
                    .list_calls(pb::ListCallsRequest::default())
                    .await
                    .unwrap()
                    .into_inner()
                    .calls;
                most = most.max(calls.iter().filter(|c| c.state == pb::CallState::Live as i32).count());
                samples += 1;
            }
            (most, samples)
        })
    };
    let counting = {
        let (shared, sampling) = (shared.clone(), sampling.clone());
        std::thread::spawn(move || {
            let (mut registered, mut slots, mut samples) = (0, 0, 0);
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                registered = registered.max(shared.calls.len());
                slots = slots.max(shared.sessions.running());
                samples += 1;
                std::thread::sleep(Duration::from_micros(50));
            }
            (registered, slots, samples)
        })
    };

    // Every start at once; an accepted call stays open until all are answered.
    let all_answered = Arc::new(tokio::sync::Barrier::new(STARTS));
    let starts: Vec<_> = (0..STARTS)
        .map(|i| {
            let (agent, all_answered) = (agent.clone(), all_answered.clone());
            tokio::spawn(async move {
                let mut ingest = agent.ingest().await.unwrap();
                let (tx, rx) = mpsc::channel(4);
                tx.send(pb::ClientMessage {
                    message: Some(pb::client_message::Message::Start(pb::CallStart {
                        call_id: format!("burst-{i}"),
                        agent_id: "a17".into(),
                        team: "billing".into(),
                        sample_rate: 8_000,
                        encoding: pb::Encoding::Pcm16le.into(),
                        channels: vec![pb::Channel::Agent.into()],
                        resume: None,
                    })),
                })
                .await
                .unwrap();
                let answer = ingest.stream_call(ReceiverStream::new(rx)).await;
                all_answered.wait().await;
                match answer {
                    Ok(responses) => {
                        let mut responses = responses.into_inner();
                        tx.send(pb::ClientMessage {
                            message: Some(pb::client_message::Message::Control(pb::CallControl {
                                action: pb::call_control::Action::End.into(),
                                transfer_to: String::new(),
                            })),
                        })
                        .await
                        .unwrap();
                        let mut last = None;
                        while let Some(m) = responses.message().await.unwrap() {
                            last = m.message;
                        }
                        assert!(matches!(last, Some(Out::Ended(_))), "{last:?}");
                        Ok(())
                    }
                    Err(status) => Err(status),
                }
            })
        })
        .collect();
    let mut accepted = 0;
    let mut refused = 0;
    for start in starts {
        match start.await.unwrap() {
            Ok(()) => accepted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("limits.max_calls"), "{status:?}");
                refused += 1;
            }
        }
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (listed, listings) = listing.await.unwrap();
    let (registered, slots, samples) = counting.join().unwrap();
    println!(
        "{STARTS} starts, max_calls {MAX}: {accepted} accepted, {refused} refused; most live calls seen: \
         {listed} listed ({listings} ListCalls), {registered} registered and {slots} slots taken ({samples} samples)"
    );
    assert_eq!((accepted, refused), (MAX, STARTS - MAX));
    assert!(listings > 0 && samples > 100);
    assert!(listed <= MAX && registered <= MAX && slots <= MAX);
    assert_eq!(slots, MAX, "every slot was taken at some point");
    // Slots come back once the sessions have fully ended.
    let deadline = Instant::now() + Duration::from_secs(5);
    while shared.sessions.running() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!((shared.sessions.running(), shared.calls.len()), (0, 0));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_call_returns_within_its_grace_and_keeps_what_was_said() {
    const GRACE_S: f64 = 5.0;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.shutdown_grace_s = GRACE_S;
    let server = Server::start(cfg).await.unwrap();
    let shared = server.shared().clone();
    let (rec, controls) = recording("hold_violation_call");
    // In real time: the call is mid-way when the server stops.
    let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
    let softphone = {
        let agent = conn(&server, AGENT);
        tokio::spawn(async move {
            let mut accepted_tx = Some(accepted_tx);
            client::softphone(
                &agent,
                SoftphoneCall {
                    call_id: "stopped-1".into(),
                    agent_id: "a17".into(),
                    team: "billing".into(),
                    recording: rec,
                    controls,
                    fast: false,
                    drop_at_end: false,
                },
                |_| {
                    if let Some(tx) = accepted_tx.take() {
                        let _ = tx.send(());
                    }
                },
            )
            .await
        })
    };
    accepted_rx.await.unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let stopping = Instant::now();
    let unfinished = server.stop().await.unwrap();
    let stop_s = stopping.elapsed().as_secs_f64();
    println!("stop mid-call: {stop_s:.2} s (grace {GRACE_S} s)");
    assert!(stop_s <= GRACE_S + 0.5, "{stop_s} s");
    assert!(unfinished.is_empty(), "{unfinished:?}");

    let ended = softphone.await.unwrap();
    let error = ended.expect_err("the softphone hears the shutdown");
    assert!(format!("{error:#}").contains("shutting down"), "{error:#}");
    let record = shared.store.record("stopped-1").unwrap().expect("stored");
    let info = record.call.unwrap();
    assert_eq!(info.state, pb::CallState::Aborted as i32);
    assert_eq!(info.reason, "the server is shutting down");
    assert!(info.audio_s > 6.0 && info.audio_s < 12.0, "{} s", info.audio_s);
    // The opening (said in the first seconds) is stored.
    assert!(!record.transcript.is_empty());
    assert!(record.transcript.iter().all(|t| t.is_final));
    assert!(shared.calls.is_empty() && shared.sessions.running() == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_that_never_finishes_its_call_does_not_hold_shutdown_past_the_grace() {
    const GRACE_S: f64 = 1.0;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.shutdown_grace_s = GRACE_S;
    let server = Server::start(cfg).await.unwrap();
    let shared = server.shared().clone();
    let spec = CallSpec {
        call_id: "stuck-1".into(),
        agent_id: "a17".into(),
        team: "billing".into(),
        format: SourceFormat {
            sample_rate: 8_000,
            channels: vec![callwatch_core::audio::Channel::Agent],
        },
        encoding: Encoding::Pcm16Le,
    };
    let (mut call, replies) = session::open(&shared, spec).await.unwrap();
    let replies = collect(replies);
    for seq in 0..50 {
        call.audio(0, seq, &[0; 320]).await.unwrap();
    }
    // The adapter holds the call open through the shutdown.
    let stopping = Instant::now();
    let unfinished = server.stop().await.unwrap();
    let stop_s = stopping.elapsed().as_secs_f64();
    println!("stop with a call never finished: {stop_s:.2} s (grace {GRACE_S} s)");
    assert_eq!(unfinished, ["stuck-1"]);
    assert!((GRACE_S..GRACE_S + 0.5).contains(&stop_s), "{stop_s} s");
    // Let go, the call still ends and is stored.
    drop(call);
    let replies = replies.await.unwrap();
    let Some(Outgoing::Ended(ended)) = replies.last() else {
        panic!("{:?}", replies.last())
    };
    assert_eq!(ended.call.as_ref().unwrap().state, pb::CallState::Dropped as i32);
    assert_eq!(shared.sessions.running(), 0);
}
