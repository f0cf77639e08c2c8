//! A softphone whose connection breaks mid-call resumes it: same call id,
//! same session, the audio goes on where the server's last Ack says, one
//! call in the store. A break nobody resumes ends the call as DROPPED after
//! `limits.resume_s`, and then (as after a restart) there is nothing to
//! resume. The break is real: a TCP relay between softphone and server
//! closes every connection through it.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callwatch_client::{self as client, Connection};
use callwatch_proto::pb::{self, server_message::Message as Out};
use callwatch_server::server::Server;
use common::service::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// A TCP relay to the server that the test can cut: every connection
/// through it is closed at once (a network blip); new ones pass.
struct Relay {
    addr: SocketAddr,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(server: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links = Arc::new(Mutex::new(Vec::new()));
        let accepted = links.clone();
        tokio::spawn(async move {
            while let Ok((mut near, _)) = listener.accept().await {
                let link = tokio::spawn(async move {
                    let mut far = TcpStream::connect(server).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut near, &mut far).await;
                });
                accepted.lock().unwrap().push(link);
            }
        });
        Self { addr, links }
    }

    /// Closes every connection through the relay (both sockets dropped).
    fn cut(&self) -> usize {
        let links: Vec<_> = self.links.lock().unwrap().drain(..).collect();
        for link in &links {
            link.abort();
        }
        links.len()
    }

    fn conn(&self, token: &str) -> Connection {
        Connection {
            server: format!("http://{}", self.addr),
            token: token.into(),
            ca: None,
            identity: None,
        }
    }
}

async fn serve(data: &std::path::Path, resume_s: f64) -> Server {
    let mut cfg = config(data);
    cfg.limits.resume_s = resume_s;
    Server::start(cfg).await.expect("the server starts")
}

async fn record(server: &Server, call_id: &str) -> pb::CallRecord {
    let (store, id) = (server.shared().store.clone(), call_id.to_owned());
    tokio::task::spawn_blocking(move || store.record(&id).unwrap().expect("stored"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_connection_breaks_is_resumed_and_goes_on_as_one_call() {
    let data = tempfile::tempdir().unwrap();
    let server = serve(data.path(), 10.0).await;
    let relay = Arc::new(Relay::start(server.addr).await);
    // Real time, so the break falls inside the first utterance (0.3–5.5 s).
    let mut call = call("basic_call", "resume-1", "a17", "billing");
    call.fast = false;
    let length_s = call.recording.channels[0].1.len() as f64 / call.recording.sample_rate as f64;
    let (mut received, mut cut_at, mut resumed_after) = (Vec::new(), None, None);
    let cutter = relay.clone();
    let ended = client::softphone(&relay.conn(AGENT_A17), call, |m| {
        if let (Some(Out::Accepted(_)), Some((_, when))) = (&m.message, cut_at) {
            resumed_after = Some(Instant::elapsed(&when));
        }
        if let Some(Out::Ack(ack)) = &m.message {
            if cut_at.is_none() && ack.received_s >= 4.0 {
                assert_eq!(cutter.cut(), 1, "one connection to cut");
                cut_at = Some((ack.received_s, Instant::now()));
            }
        }
        received.push(m.message.clone().unwrap());
    })
    .await
    .expect("the call resumes and ends")
    .expect("the call's end");
    let (cut_s, _) = cut_at.expect("the connection was cut");

    let accepted: Vec<_> = received.iter().filter(|m| matches!(m, Out::Accepted(_))).collect();
    assert_eq!(accepted.len(), 2, "accepted, then accepted again on resuming");
    let resumed_at = received.iter().position(|m| matches!(m, Out::Accepted(_))).unwrap();
    let Some(Out::Ack(first)) = received[resumed_at + 1..]
        .iter()
        .skip_while(|m| !matches!(m, Out::Accepted(_)))
        .nth(1)
    else {
        panic!("no Ack right after the resumed acceptance")
    };
    println!(
        "cut at {cut_s:.1} s of call; resumed from packets {:?}, {:.0} ms after the cut",
        first.next_seq,
        resumed_after.expect("resumed").as_secs_f64() * 1000.0
    );
    let info = ended.call.unwrap();
    assert_eq!(
        (info.call_id.as_str(), info.state),
        ("resume-1", pb::CallState::Ended as i32),
        "{}",
        info.reason
    );

    let stored = record(&server, "resume-1").await;
    let call = stored.call.unwrap();
    assert_eq!(call.state, pb::CallState::Ended as i32);
    assert!(
        (call.audio_s - length_s).abs() < 0.1,
        "{} s of audio stored for a {length_s:.2} s call",
        call.audio_s
    );
    let Some(Out::Ack(last)) = received.iter().rev().find(|m| matches!(m, Out::Ack(_))) else {
        panic!("no Ack")
    };
    assert_eq!(
        last.gaps,
        [0, 0],
        "audio lost at the break was resent, not filled with silence"
    );
    // The utterance the break fell inside was heard whole.
    let first_words = &stored.transcript[0].text.to_lowercase();
    assert!(first_words.contains("how can i help you today"), "{first_words}");
    let store = server.shared().store.clone();
    let calls = tokio::task::spawn_blocking(move || store.recent_calls(None, 100).unwrap())
        .await
        .unwrap();
    assert_eq!(calls.len(), 1, "one call in the store: {calls:?}");
    server.stop().await.unwrap();
}

fn start(call_id: &str, agent: &str, resume: Option<Vec<u64>>) -> pb::ClientMessage {
    pb::ClientMessage {
        message: Some(pb::client_message::Message::Start(pb::CallStart {
            call_id: call_id.into(),
            agent_id: agent.into(),
            team: "billing".into(),
            sample_rate: 8000,
            encoding: pb::Encoding::Pcm16le as i32,
            channels: vec![pb::Channel::Agent as i32],
            resume: resume.map(|acked_seq| pb::Resume { acked_seq }),
        })),
    }
}

fn audio(seq: u64) -> pb::ClientMessage {
    pb::ClientMessage {
        message: Some(pb::client_message::Message::Audio(pb::Audio {
            channel: 0,
            seq,
            data: vec![0; 320],
        })),
    }
}

async fn open(
    c: &Connection,
    first: Vec<pb::ClientMessage>,
) -> Result<tonic::Streaming<pb::ServerMessage>, tonic::Status> {
    let mut ingest = c.ingest().await.unwrap();
    let (tx, rx) = mpsc::channel(64);
    for m in first {
        tx.send(m).await.unwrap();
    }
    // The sender stays open with the stream.
    tokio::spawn(async move { tx.closed().await });
    ingest
        .stream_call(ReceiverStream::new(rx))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_nobody_resumes_is_a_dropped_call_and_cannot_be_resumed_after() {
    let data = tempfile::tempdir().unwrap();
    let server = serve(data.path(), 1.5).await;
    let relay = Relay::start(server.addr).await;
    let mut first = vec![start("lost-1", "a17", None)];
    first.extend((0..60).map(audio));
    let mut replies = open(&relay.conn(AGENT_A17), first).await.unwrap();
    // Accepted, then an Ack once a second of audio is in.
    while !matches!(replies.message().await.unwrap().unwrap().message, Some(Out::Ack(_))) {}
    assert_eq!(relay.cut(), 1);
    let broke = Instant::now();

    // Another agent cannot take the parked call over: no such call, to it.
    let stolen = open(&conn(&server, AGENT_B22), vec![start("lost-1", "b22", Some(vec![0]))]).await;
    assert_eq!(stolen.err().map(|s| s.code()), Some(Code::NotFound));

    let call = loop {
        let info = record(&server, "lost-1").await.call.unwrap();
        if info.state != pb::CallState::Live as i32 {
            break info;
        }
        assert!(broke.elapsed() < Duration::from_secs(10), "still live");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let waited = broke.elapsed().as_secs_f64();
    println!("dropped {waited:.2} s after the break (resume_s = 1.5)");
    assert!((1.5..4.0).contains(&waited), "{waited}");
    assert_eq!(call.state, pb::CallState::Dropped as i32);
    assert!(call.reason.contains("not resumed within 1.5 s"), "{}", call.reason);

    // Past resume_s (as after a restart, when no call is parked) the call
    // cannot be resumed.
    let late = open(&conn(&server, AGENT_A17), vec![start("lost-1", "a17", Some(vec![50]))]).await;
    let Err(status) = late else {
        panic!("a call past resume_s was resumed")
    };
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("not waiting to be resumed"),
        "{}",
        status.message()
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_broken_call_is_aborted_and_not_resumed() {
    let data = tempfile::tempdir().unwrap();
    let server = serve(data.path(), 30.0).await;
    let relay = Relay::start(server.addr).await;
    let mut first = vec![start("restart-1", "a17", None)];
    first.extend((0..60).map(audio));
    let mut replies = open(&relay.conn(AGENT_A17), first).await.unwrap();
    while !matches!(replies.message().await.unwrap().unwrap().message, Some(Out::Ack(_))) {}
    assert_eq!(relay.cut(), 1);
    // Parked, still live; then the server stops: the call ends as aborted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        record(&server, "restart-1").await.call.unwrap().state,
        pb::CallState::Live as i32
    );
    server.stop().await.unwrap();

    let server = serve(data.path(), 30.0).await;
    let info = record(&server, "restart-1").await.call.unwrap();
    assert_eq!(info.state, pb::CallState::Aborted as i32, "{}", info.reason);
    let resumed = open(
        &conn(&server, AGENT_A17),
        vec![start("restart-1", "a17", Some(vec![50]))],
    )
    .await;
    let Err(status) = resumed else {
        panic!("a call from before the restart was resumed")
    };
    assert_eq!(status.code(), Code::NotFound, "{}", status.message());
    assert_eq!(
        record(&server, "restart-1").await.call.unwrap().state,
        pb::CallState::Aborted as i32
    );
    server.stop().await.unwrap();
}
