//! What anyone who can reach the port gets without a valid token, against a
//! real server on 127.0.0.1:0: requests to random gRPC paths add no
//! `/metrics` series and are answered UNIMPLEMENTED; the dashboard's pages
//! carry a strict Content-Security-Policy, `nosniff` and no referrer; and a
//! peer guessing tokens is refused after a few tries, while others are not.

mod common;

use std::net::IpAddr;

use callwatch_proto::pb;
use callwatch_server::server::Server;
use common::service::*;
use tonic::codegen::Service as _;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// A plain HTTP/1.0 GET: the whole response, headers and body.
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// The series `/metrics` exposes (its lines that are not comments, without
/// their values), sorted.
async fn series(metrics: &str) -> Vec<String> {
    let response = http_get(metrics, "/metrics").await;
    let body = response.split_once("\r\n\r\n").expect("an HTTP response").1;
    let mut series: Vec<String> = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').map_or(l, |(name, _)| name).to_owned())
        .collect();
    series.sort();
    series
}

/// A gRPC request without a token to `path`: its grpc-status.
async fn rpc_to(channel: &mut Channel, authority: &str, path: &str) -> String {
    std::future::poll_fn(|cx| channel.poll_ready(cx)).await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::empty())
        .unwrap();
    let response = channel.call(request).await.unwrap();
    response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_paths_add_no_metrics_series_and_pages_carry_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago, for the metrics listener (one per
    // process: the recorder is global, so only this test sets one).
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = config(dir.path());
    cfg.metrics_listen = Some(metrics);
    let server = Server::start(cfg).await.unwrap();
    let authority = server.addr.to_string();
    let metrics = metrics.to_string();
    let channel = Endpoint::from_shared(format!("http://{authority}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // The first unknown requests make the `unknown` series (UNIMPLEMENTED,
    // and UNAUTHENTICATED for a made-up method of a served service); no
    // later one adds any.
    assert_eq!(rpc_to(&mut channel.clone(), &authority, "/warm.Up/Now").await, "12");
    assert_eq!(
        rpc_to(&mut channel.clone(), &authority, "/callwatch.v1.Admin/Now").await,
        "16"
    );
    let before = series(&metrics).await;
    assert!(
        before.iter().any(|s| s.contains("method=\"unknown\"")),
        "unknown paths are counted: {before:?}"
    );
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (mut channel, authority) = (channel.clone(), authority.clone());
            tokio::spawn(async move {
                for n in 0..1250 {
                    let path = match n % 3 {
                        0 => format!("/x{t}.Svc{n}/M{n}"),
                        1 => format!("/callwatch.v1.Supervisor/Nope{t}x{n}"),
                        _ => format!("/{t}-{n}"),
                    };
                    // UNIMPLEMENTED, or UNAUTHENTICATED under a known service.
                    let status = rpc_to(&mut channel, &authority, &path).await;
                    assert!(status == "12" || status == "16", "{path}: {status}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let after = series(&metrics).await;
    assert_eq!(before, after, "10,000 random paths changed the series");
    println!("/metrics series: {} before and after 10,000 random paths", after.len());

    // The dashboard's pages.
    for path in ["/", "/agent", "/no-such-file"] {
        let response = http_get(&authority, path).await.to_ascii_lowercase();
        let (head, _) = response.split_once("\r\n\r\n").unwrap();
        for header in [
            "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self';",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
        ] {
            assert!(head.contains(header), "{path}: no {header:?} in\n{head}");
        }
    }
    server.stop().await.unwrap();
}

/// `ListCalls` with `token` over a new connection from `local` (a loopback
/// address): the status it got.
async fn list_from(server: &Server, local: IpAddr, token: &str) -> Code {
    let channel = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .local_address(Some(local))
        .connect()
        .await
        .unwrap();
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    let mut client =
        pb::supervisor_client::SupervisorClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", bearer.clone());
            Ok(req)
        });
    match client.list_calls(pb::ListCallsRequest::default()).await {
        Ok(_) => Code::Ok,
        Err(status) => {
            if status.code() == Code::ResourceExhausted {
                assert!(status.message().contains("try again in"), "{}", status.message());
            }
            status.code()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_guessing_tokens_is_refused_after_five_tries_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let guesser: IpAddr = "127.0.0.1".parse().unwrap();
    let neighbour: IpAddr = "127.0.0.2".parse().unwrap();

    for n in 0..5 {
        assert_eq!(
            list_from(&server, guesser, &format!("guess-{n:04}")).await,
            Code::Unauthenticated,
            "try {n}"
        );
    }
    // The sixth try, and even a valid token, from that address wait out the minute.
    assert_eq!(list_from(&server, guesser, "guess-0005").await, Code::ResourceExhausted);
    assert_eq!(list_from(&server, guesser, SUP_ALL).await, Code::ResourceExhausted);
    // Another address is not affected.
    assert_eq!(list_from(&server, neighbour, SUP_ALL).await, Code::Ok);
    server.stop().await.unwrap();
}
