//! `callwatch serve`: the services on one port, with health, reflection,
//! access control, optional TLS, Prometheus metrics and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Identity as TlsIdentity, ServerTlsConfig};

use tower::Layer as _;

use crate::admin::Admin;
use crate::agent::AgentDesk;
use crate::calls::Calls;
use crate::config::ServeConfig;
use crate::context::{LoadedRules, Shared};
use crate::desks::Desks;
use crate::feed::hub::Hub;
use crate::feed::Feed;
use crate::ingest::Ingest;
use crate::pb;
use crate::slots::Sessions;
use crate::store::sqlite::Sqlite;
use crate::store::CallStore;
use crate::supervisor::Supervisor;
use crate::transcript_filter::{Redaction, TranscriptFilter};
use callwatch_asr::transcribe::pool::{Pool, PoolConfig};
use callwatch_asr::transcribe::Model;

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    grace: Duration,
    shared: Arc<Shared>,
}

impl Server {
    /// Loads the model and rules, opens the store, binds and starts serving.
    /// Every word leaving a call session is redacted as `[privacy]` says.
    pub async fn start(config: ServeConfig) -> Result<Self> {
        let redaction = Redaction(config.privacy.entities()?);
        Self::start_filtered(config, Arc::new(redaction)).await
    }

    /// [`Server::start`], with every word leaving a call session passing `filter`.
    pub async fn start_filtered(config: ServeConfig, filter: Arc<dyn TranscriptFilter>) -> Result<Self> {
        let tokens = config.tokens()?;
        let rules = LoadedRules::load(config.rules.as_deref())?;
        let model_path = callwatch_asr::model::locate(config.model.as_deref())?;
        let defaults = PoolConfig::default();
        let workers = if config.workers == 0 {
            defaults.workers
        } else {
            config.workers
        };
        let threads = config.threads.max(1);
        let pool = tokio::task::spawn_blocking(move || -> Result<Pool> {
            let model = Model::load(&model_path)?;
            Pool::new(
                &model,
                PoolConfig {
                    workers,
                    threads_per_worker: threads,
                    max_partials: 2 * workers,
                    ..defaults
                },
            )
        })
        .await??;
        let store: Arc<dyn CallStore> = Arc::new(Sqlite::open(&config.data)?);
        if let Some(addr) = config.metrics_listen {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .install()
                .with_context(|| format!("cannot serve metrics on {addr}"))?;
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let tls = match &config.tls {
            Some(files) => {
                let read = |p: &Path| std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()));
                Some(ServerTlsConfig::new().identity(TlsIdentity::from_pem(read(&files.cert)?, read(&files.key)?)))
            }
            None => None,
        };
        let (stop, shutdown) = watch::channel(false);
        let grace = Duration::from_secs_f64(config.shutdown_grace_s);
        let shared = Arc::new(Shared {
            feed: Arc::new(Hub::new(store.clone(), config.limits.subscriber_queue)),
            store,
            pool: Arc::new(pool),
            calls: Calls::default(),
            sessions: Sessions::new(config.limits.max_calls, filter),
            desks: Desks::default(),
            rules: RwLock::new(Arc::new(rules)),
            shutdown: shutdown.clone(),
            config,
        });

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<pb::call_ingest_server::CallIngestServer<Ingest>>()
            .await;
        health
            .set_serving::<pb::supervisor_server::SupervisorServer<Supervisor>>()
            .await;
        health.set_serving::<pb::admin_server::AdminServer<Admin>>().await;
        // Both reflection versions: grpcurl and grpcui speak v1; Python's
        // grpcio-reflection, older grpcurl and Postman speak only v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let (reflection_v1, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);

        let auth = move |req| tokens.authenticate(req);
        // Browsers speak gRPC-web (HTTP/1.1 without TLS); the services they
        // use accept it, on the same port. Streaming *to* the server is not
        // possible from a browser, so CallIngest stays gRPC only.
        let grpc_web = tonic_web::GrpcWebLayer::new();
        let routes = tonic::service::Routes::new(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(pb::call_ingest_server::CallIngestServer::with_interceptor(
                Ingest { shared: shared.clone() },
                auth.clone(),
            ))
            .add_service(
                grpc_web.layer(pb::supervisor_server::SupervisorServer::with_interceptor(
                    Supervisor::new(shared.clone()),
                    auth.clone(),
                )),
            )
            .add_service(grpc_web.layer(pb::admin_server::AdminServer::with_interceptor(
                Admin { shared: shared.clone() },
                auth.clone(),
            )))
            .add_service(grpc_web.layer(pb::agent_desk_server::AgentDeskServer::with_interceptor(
                AgentDesk { shared: shared.clone() },
                auth,
            )));
        // Anything that is not an RPC is the dashboard.
        let routes: tonic::service::Routes = routes.into_axum_router().fallback(crate::web::asset).into();
        let mut builder = tonic::transport::Server::builder().accept_http1(true);
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).context("bad TLS certificate or key")?;
        }
        let router = builder
            .layer(tower::layer::layer_fn(|inner| RpcMetrics { inner }))
            .add_routes(routes);
        let mut stopping = shutdown;
        let task = tokio::spawn(router.serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            async move {
                let _ = stopping.wait_for(|stop| *stop).await;
                health
                    .set_not_serving::<pb::call_ingest_server::CallIngestServer<Ingest>>()
                    .await;
            },
        ));
        tracing::info!(%addr, "callwatch serving");
        Ok(Self {
            addr,
            stop,
            task,
            grace,
            shared,
        })
    }

    /// The alert feed (for its figures).
    pub fn feed(&self) -> &dyn Feed {
        self.shared.feed.as_ref()
    }

    /// What the handlers share: for in-process adapters and tests.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting calls and requests, lets calls in progress finish
    /// their finals and alerts into the store, and returns within the grace
    /// period; returns the calls whose sessions were still running then.
    pub async fn stop(self) -> Result<Vec<String>> {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + self.grace;
        let unfinished = self.shared.sessions.drain(deadline).await;
        let mut task = self.task;
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(joined) => joined?.context("the gRPC server failed")?,
            Err(_) => {
                task.abort();
                tracing::warn!("grace period over; closing the connections still open");
            }
        }
        Ok(unfinished)
    }
}

/// Serves until SIGINT or SIGTERM, then stops gracefully.
pub async fn run(config: ServeConfig) -> Result<()> {
    let server = Server::start(config).await?;
    println!("callwatch serving on {}", server.addr);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("shutting down: finishing calls in progress");
    server.stop().await?;
    Ok(())
}

/// Per-RPC request counts (gRPC and gRPC-web) and time to the response's start, by method and
/// the status the response started with (streams report later errors in
/// their trailers, not here).
#[derive(Clone)]
struct RpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        // Dashboard files are not RPCs.
        let rpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
        if !rpc {
            return Box::pin(self.inner.call(req));
        }
        let method = req.uri().path().to_owned();
        let started = Instant::now();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await;
            let code = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("0")
                    .to_owned(),
                Err(_) => "transport".to_owned(),
            };
            metrics::counter!("callwatch_rpc_requests_total", "method" => method.clone(), "code" => code).increment(1);
            metrics::histogram!("callwatch_rpc_response_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            response
        })
    }
}
