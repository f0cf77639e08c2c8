//! TLS for `callwatch serve` (rustls), with optional mutual TLS, reloaded
//! without a restart.
//!
//! Each connection is handshaken with the configuration current when it
//! arrives; a reload (SIGHUP, or the certificate, key or client CA file
//! changing on disk, checked every [`POLL`]) swaps that configuration for
//! new connections and leaves the open ones, and their calls, alone. A
//! reload that fails (a half-written file, a key that does not match) keeps
//! the configuration in use and logs why; the next change is tried again.
//!
//! Handshakes run on their own tasks, at most [`HANDSHAKE`] each, so a slow
//! or silent peer delays nobody's accept; finished ones are handed to the
//! server through a queue of [`READY_QUEUE`] (the handshake task waits for
//! room: nothing is dropped).

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::TlsFiles;

/// How often the files are checked for changes.
pub const POLL: Duration = Duration::from_secs(1);
/// Longest a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// The files' modification times and sizes, as last read.
type Stamp = Vec<Option<(SystemTime, u64)>>;

pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    seen: Mutex<Stamp>,
}

impl Tls {
    /// Reads the files; an error names the one at fault.
    pub fn load(files: &TlsFiles) -> Result<Arc<Self>> {
        let seen = stamp(files);
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(server_config(files)?)),
            files: files.clone(),
            seen: Mutex::new(seen),
        }))
    }

    /// Re-reads the files; on failure the configuration in use stays.
    pub fn reload(&self) -> Result<()> {
        *self.seen.lock().expect("poisoned") = stamp(&self.files);
        let config = server_config(&self.files)?;
        *self.current.write().expect("poisoned") = Arc::new(config);
        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Reloads if any file changed since it was last read.
    fn reload_if_changed(&self) {
        if *self.seen.lock().expect("poisoned") == stamp(&self.files) {
            return;
        }
        if let Err(e) = self.reload() {
            tracing::error!("TLS files changed but cannot be used (the previous certificate stays): {e:#}");
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().expect("poisoned").clone())
    }

    /// Checks the files every [`POLL`] until shutdown.
    pub async fn watch_files(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let tls = self.clone();
            // File reads block: off the runtime.
            let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
        }
    }

    /// The connections accepted on `listener`, handshaken; ends when the
    /// server stops taking them.
    pub fn incoming(self: Arc<Self>, listener: TcpListener) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
        let (ready, incoming) = mpsc::channel(READY_QUEUE);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = ready.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: the
                        // listener itself is fine; try again shortly.
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, ready) = (self.acceptor(), ready.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = ready.send(Ok(stream)).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, "TLS handshake refused: {e}"),
                        Err(_) => tracing::info!(%peer, "TLS handshake not finished within {HANDSHAKE:?}"),
                    }
                });
            }
        });
        ReceiverStream::new(incoming)
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    let paths = [Some(&files.cert), Some(&files.key), files.client_ca.as_ref()];
    paths
        .into_iter()
        .flatten()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate in the file", path.display());
    }
    Ok(certs)
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("tls.client_ca: {}: not a CA certificate", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("tls.client_ca: {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| anyhow::anyhow!("tls.key: {}: not a PEM private key: {e}", files.key.display()))?;
    let mut config = builder
        .with_single_cert(certificates(&files.cert).context("tls.cert")?, key)
        .context("tls.cert and tls.key do not make a usable pair")?;
    // gRPC needs HTTP/2; gRPC-web from a browser may use HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
