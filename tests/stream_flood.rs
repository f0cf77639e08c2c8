//! 500 streams opened at once on one HTTP/2 connection by a client that
//! ignores the server's SETTINGS_MAX_CONCURRENT_STREAMS: every stream past
//! `limits.max_concurrent_streams` is refused (RST_STREAM REFUSED_STREAM),
//! while a good call on its own connection keeps its alert latency and the
//! server's memory stays within a stated bound. The flooding client speaks
//! raw HTTP/2 frames, as a hostile one would (a conforming client queues
//! its streams instead).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callwatch_client as client;
use callwatch_proto::pb::{self, alert_event::Event};
use callwatch_server::server::Server;
use common::service::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STREAMS: u32 = 500;
const MAX_STREAMS: u32 = 32;
/// Growth of the test process's RSS (server and clients in it) the flood
/// may cause, measured once the good call's decoding has warmed up (the
/// first decodes allocate whisper's compute buffers).
const FLOOD_RSS_BOUND_MB: f64 = 32.0;
/// The whole process (model, two workers whose buffers grow with the
/// longest clip decoded, the good call) at the end; measured 246 MB.
const RSS_BOUND_MB: f64 = 320.0;

const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const REFUSED_STREAM: u32 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// HPACK "literal header field without indexing, new name", no Huffman
/// (every name and value here is under 127 bytes).
fn header(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0);
    block.push(name.len() as u8);
    block.extend(name.as_bytes());
    block.push(value.len() as u8);
    block.extend(value.as_bytes());
}

async fn read_frame(tcp: &mut TcpStream) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0; 9];
    tcp.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).await?;
    Ok((head[3], head[4], stream, payload))
}

/// Opens `STREAMS` StreamCall streams at once, then counts the streams the
/// server refused within a few seconds (and whether it sent GOAWAY).
async fn flood(server: SocketAddr) -> (usize, bool) {
    let mut tcp = TcpStream::connect(server).await.unwrap();
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    tcp.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    // The server's limit applies once its SETTINGS are acknowledged.
    loop {
        let (kind, flags, _, payload) = read_frame(&mut tcp).await.unwrap();
        if kind == SETTINGS && flags & 1 == 0 {
            let advertised = payload
                .chunks(6)
                .find(|s| u16::from_be_bytes([s[0], s[1]]) == 0x3)
                .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
            assert_eq!(advertised, Some(MAX_STREAMS));
            tcp.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
            break;
        }
    }
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/callwatch.v1.CallIngest/StreamCall"),
        (":authority", &server.to_string()),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("authorization", &format!("Bearer {ADMIN}")),
    ] {
        header(&mut block, name, value);
    }
    let mut burst = Vec::new();
    for i in 0..STREAMS {
        // END_HEADERS, no END_STREAM: each stream stays open, sending nothing.
        burst.extend(frame(HEADERS, 0x4, 2 * i + 1, &block));
    }
    tcp.write_all(&burst).await.unwrap();
    let (mut refused, mut goaway) = (std::collections::HashSet::new(), false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Ok((kind, _, stream, payload))) = tokio::time::timeout_at(deadline, read_frame(&mut tcp)).await {
        match kind {
            RST_STREAM if u32::from_be_bytes(payload[..4].try_into().unwrap()) == REFUSED_STREAM => {
                refused.insert(stream);
            }
            GOAWAY => goaway = true,
            _ => {}
        }
    }
    (refused.len(), goaway)
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_streams_on_one_connection_are_refused_past_the_limit_while_a_good_call_goes_on() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.limits.max_concurrent_streams = MAX_STREAMS;
    let server = Server::start(cfg).await.unwrap();
    let start_mb = rss_mb();

    // The good call: a real-time softphone whose customer swears at 5.0 s
    // and 15.1 s (cut at 20 s), watched from the supervisors' feed.
    let supervisor = conn(&server, SUP_BILLING);
    let feed = watch(&supervisor, "c0", 1);
    let mut good = call("abuse_call", "good-1", "a17", "billing");
    good.fast = false;
    let rate = good.recording.sample_rate as usize;
    for (_, samples) in &mut good.recording.channels {
        samples.truncate(20 * rate);
    }
    let started = Instant::now();
    let softphone = tokio::spawn({
        let c = conn(&server, AGENT_A17);
        async move { client::softphone(&c, good, |_| {}).await }
    });

    // Into the first utterance: partials are being decoded.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before_mb = rss_mb();
    let (refused, goaway) = flood(server.addr).await;
    let flood_mb = rss_mb() - before_mb;
    println!("{STREAMS} streams on one connection: {refused} refused (REFUSED_STREAM), GOAWAY: {goaway}");
    assert!(
        refused >= (STREAMS - MAX_STREAMS) as usize || goaway,
        "only {refused} of {STREAMS} streams refused"
    );
    let live = server.shared().calls.len();
    assert!(live <= 1, "{live} calls live: the flood's streams opened calls");

    let ended = softphone
        .await
        .unwrap()
        .expect("the good call streams")
        .expect("its end");
    assert_eq!(ended.call.unwrap().state, pb::CallState::Ended as i32);
    let events = feed.await.unwrap();
    let mut latencies = Vec::new();
    for (e, at) in &events {
        if let Some(Event::Alert(a)) = &e.event {
            if a.rule_id == "language.profanity_customer" {
                let latency = at.duration_since(started).as_secs_f64() - a.end_s;
                println!(
                    "good call: alert {} on words ending at {:.1} s reached the feed {latency:.2} s later",
                    a.rule_id, a.end_s
                );
                latencies.push(latency);
            }
        }
    }
    // Two swears; the cut at 20 s may split the second utterance in two.
    assert!(latencies.len() >= 2, "the good call's alerts: {latencies:?}");
    assert!(latencies.iter().all(|&l| l < 5.0), "alert latency {latencies:?}");
    let end_mb = rss_mb();
    println!(
        "RSS: {start_mb:.0} MB at start, {before_mb:.0} MB before the flood, +{flood_mb:.1} MB by the flood \
         (bound {FLOOD_RSS_BOUND_MB} MB), {end_mb:.0} MB at the end (bound {RSS_BOUND_MB} MB)"
    );
    assert!(flood_mb < FLOOD_RSS_BOUND_MB, "the flood grew RSS by {flood_mb:.1} MB");
    assert!(end_mb < RSS_BOUND_MB, "RSS grew to {end_mb:.0} MB");
    server.stop().await.unwrap();
}
