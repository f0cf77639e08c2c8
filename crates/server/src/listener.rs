//! The serve port's connections, sorted: a WebSocket upgrade to
//! `/ingest/…` (telephony gateways) is served here by hyper with upgrades
//! on; everything else (gRPC, gRPC-web, the dashboard) goes on to tonic,
//! whose server does not do HTTP upgrades.
//!
//! Sorting peeks at the request line without consuming it, in a task per
//! connection, so a slow client never holds up the accept loop. A TLS
//! connection cannot be peeked into and goes to tonic: gateways on a TLS
//! port need TLS terminated in front (as Twilio's `public_url` allows).

use std::io;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// How a gateway's upgrade request starts.
const GATEWAY_PREFIX: &[u8] = b"GET /ingest/";
/// A client that has not sent its first bytes by then goes to tonic, whose
/// own timeouts apply.
const SORT_WITHIN: Duration = Duration::from_secs(10);
/// Connections accepted and sorted but not yet taken by tonic.
const HANDOFF_QUEUE: usize = 64;

/// Accepts on `listener` until shutdown; returns the connections for tonic.
pub fn split(
    listener: TcpListener,
    gateways: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) -> ReceiverStream<io::Result<TcpStream>> {
    let (tx, rx) = mpsc::channel(HANDOFF_QUEUE);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            };
            let (tx, gateways) = (tx.clone(), gateways.clone());
            tokio::spawn(async move {
                if is_gateway(&stream).await {
                    serve_gateway(stream, gateways).await;
                } else {
                    let _ = tx.send(Ok(stream)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn is_gateway(stream: &TcpStream) -> bool {
    let mut buf = [0u8; GATEWAY_PREFIX.len()];
    let sorted = tokio::time::timeout(SORT_WITHIN, async {
        loop {
            let n = stream.peek(&mut buf).await.unwrap_or(0);
            if n == 0 || !GATEWAY_PREFIX.starts_with(&buf[..n]) {
                return false;
            }
            if n == GATEWAY_PREFIX.len() {
                return true;
            }
            // A request line split across packets: rare, so a short sleep
            // rather than spinning on a peek that returns at once.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    sorted.await.unwrap_or(false)
}

async fn serve_gateway(stream: TcpStream, gateways: axum::Router) {
    let service = TowerToHyperService::new(gateways);
    let served = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "gateway connection ended");
    }
}
