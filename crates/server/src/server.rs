//! `callwatch serve`: the services on one port, with health, reflection,
//! access control, optional TLS, Prometheus metrics and graceful shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;

use tower::Layer as _;

use crate::admin::Admin;
use crate::agent::AgentDesk;
use crate::audit::{self, Audit};
use crate::calls::Calls;
use crate::config::ServeConfig;
use crate::context::{LoadedRules, Shared};
use crate::desks::Desks;
use crate::feed::hub::Hub;
use crate::feed::jetstream::JetStream;
use crate::feed::Feed;
use crate::ingest::Ingest;
use crate::pb;
use crate::rpc_metrics::RpcMetrics;
use crate::slots::Sessions;
use crate::store::postgres::Postgres;
use crate::store::sqlite::Sqlite;
use crate::store::watched::Watched;
use crate::store::CallStore;
use crate::supervisor::Supervisor;
use crate::tls::Tls;
use crate::transcript_filter::{Redaction, TranscriptFilter};
use callwatch_asr::transcribe::pool::{Pool, PoolConfig};
use callwatch_asr::transcribe::Model;

/// Largest request to the dashboard services (Supervisor, Admin,
/// AgentDesk): a few strings each; a rulebook for Admin.CheckRules.
const REQUEST_LIMIT: usize = 1024 * 1024;
/// Room in a `CallIngest` message beside its audio: framing, and
/// `CallStart`'s strings (each limited, see `ingest::grpc`).
const INGEST_OVERHEAD: usize = 4096;

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    grace: Duration,
    shared: Arc<Shared>,
    tls: Option<Arc<Tls>>,
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
        // The store before the model: a wrong key is told at once.
        let key = config.store.key()?;
        let data = config.data.clone();
        let shared_store = config.cluster.as_ref().and_then(|c| c.postgres.clone());
        let store: Arc<dyn CallStore> = match shared_store {
            // SQLCipher's key has no meaning for PostgreSQL (encrypt its
            // disks, and use TLS or a private network to it).
            Some(_) if key.is_some() => {
                anyhow::bail!(
                    "bad configuration: store.key_file/key_env are for the SQLite store, not cluster.postgres"
                )
            }
            Some(url) => Arc::new(tokio::task::spawn_blocking(move || Postgres::connect(&url)).await??),
            None => Arc::new(tokio::task::spawn_blocking(move || Sqlite::open_keyed(&data, key.as_deref())).await??),
        };
        Self::start_with_store(config, filter, store).await
    }

    /// [`Server::start_filtered`] on `store` instead of the SQLite file in
    /// `config.data` (tests put a fault-injecting store here).
    pub async fn start_with_store(
        config: ServeConfig,
        filter: Arc<dyn TranscriptFilter>,
        store: Arc<dyn CallStore>,
    ) -> Result<Self> {
        config.check_exposure()?;
        for addr in config.plaintext_exposed() {
            tracing::warn!(%addr, "allow_plaintext: serving without TLS on a network address");
        }
        let tokens = config.tokens()?;
        let tls = config.tls.as_ref().map(Tls::load).transpose()?;
        let rules = LoadedRules::load(config.rules.as_deref())?;
        let store_health = Arc::new(Watched::new(store));
        let store: Arc<dyn CallStore> = store_health.clone();
        let audit = Audit::start(store.clone())?;
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
        if let Some(addr) = config.metrics_listen {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(addr)
                .install()
                .with_context(|| format!("cannot serve metrics on {addr}"))?;
            // Present from the start: a flood of refused tokens later adds no series.
            metrics::counter!(crate::audit::DROPPED_METRIC).absolute(0);
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let (stop, shutdown) = watch::channel(false);
        let grace = Duration::from_secs_f64(config.shutdown_grace_s);
        let agents = crate::agents::Roster::new(&config.agents);
        if !agents.configured() {
            tracing::warn!("no [[agents]] in the configuration: each softphone names its own call's team");
        }
        let feed: Arc<dyn Feed> = match config.cluster.as_ref().filter(|c| !c.nats.is_empty()) {
            Some(cluster) => Arc::new(JetStream::connect(store.clone(), &cluster.nats, &cluster.node).await?),
            None => Arc::new(Hub::new(store.clone(), config.limits.subscriber_queue)),
        };
        let shared = Arc::new(Shared {
            agents,
            feed,
            store,
            audit: audit.clone(),
            store_health: store_health.clone(),
            pool: Arc::new(pool),
            calls: Calls::default(),
            sessions: Sessions::new(config.limits.max_calls, config.limits.calls_per_agent, filter),
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
        tokio::spawn(report_store_health(
            health.clone(),
            store_health.healthy(),
            shutdown.clone(),
        ));
        // Both reflection versions: grpcurl and grpcui speak v1; Python's
        // grpcio-reflection, older grpcurl and Postman speak only v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let (reflection_v1, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);

        if let Some(days) = shared.config.privacy.retention_days {
            tokio::spawn(crate::retention::run(shared.clone(), days));
        }
        let auth = move |req: tonic::Request<()>| {
            let peer = req.remote_addr();
            tokens.authenticate(req).inspect_err(|refused| {
                audit.record_soon(audit::event(
                    None,
                    audit::Action::RefusedToken,
                    "",
                    peer,
                    refused.message(),
                ));
            })
        };
        // Reflection lists every service, Admin included: a token unless
        // configured open.
        let reflection_open = shared.config.reflection_open;
        let reflection_auth = {
            let auth = auth.clone();
            move |req| if reflection_open { Ok(req) } else { auth(req) }
        };
        // A softphone's largest message is an audio packet and its framing.
        let ingest_message_limit = shared.config.limits.max_chunk_bytes + INGEST_OVERHEAD;
        // Browsers speak gRPC-web (HTTP/1.1 without TLS); the services they
        // use accept it, on the same port. Streaming *to* the server is not
        // possible from a browser, so CallIngest stays gRPC only.
        let grpc_web = tonic_web::GrpcWebLayer::new();
        let routes = tonic::service::Routes::new(health_service)
            .add_service(InterceptedService::new(reflection_v1, reflection_auth.clone()))
            .add_service(InterceptedService::new(reflection_v1alpha, reflection_auth))
            .add_service(InterceptedService::new(
                pb::call_ingest_server::CallIngestServer::new(Ingest::new(shared.clone()))
                    .max_decoding_message_size(ingest_message_limit),
                auth.clone(),
            ))
            .add_service(
                grpc_web.layer(InterceptedService::new(
                    pb::supervisor_server::SupervisorServer::new(Supervisor::new(shared.clone()))
                        .max_decoding_message_size(REQUEST_LIMIT),
                    auth.clone(),
                )),
            )
            .add_service(
                grpc_web.layer(InterceptedService::new(
                    pb::admin_server::AdminServer::new(Admin { shared: shared.clone() })
                        .max_decoding_message_size(REQUEST_LIMIT),
                    auth.clone(),
                )),
            )
            .add_service(
                grpc_web.layer(InterceptedService::new(
                    pb::agent_desk_server::AgentDeskServer::new(AgentDesk { shared: shared.clone() })
                        .max_decoding_message_size(REQUEST_LIMIT),
                    auth,
                )),
            );
        // Anything that is not an RPC is the dashboard.
        let routes: tonic::service::Routes = routes.into_axum_router().fallback(crate::web::asset).into();
        let limits = &shared.config.limits;
        let keepalive = Duration::from_secs_f64(limits.keepalive_s);
        // Keepalive pings find a peer that vanished without closing its
        // connection (its calls then end as dropped).
        let router = tonic::transport::Server::builder()
            .accept_http1(true)
            .http2_keepalive_interval(Some(keepalive))
            .http2_keepalive_timeout(Some(keepalive))
            .max_concurrent_streams(Some(limits.max_concurrent_streams))
            .layer(tower::layer::layer_fn(|inner| RpcMetrics { inner }))
            .add_routes(routes);
        let mut stopping = shutdown.clone();
        let stopped = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
            health
                .set_not_serving::<pb::call_ingest_server::CallIngestServer<Ingest>>()
                .await;
        };
        let task = match &tls {
            // A TLS connection cannot be sorted before its handshake, so
            // the telephony gateways need TLS terminated in front of them.
            Some(tls) => {
                tokio::spawn(tls.clone().watch_files(shutdown));
                tokio::spawn(router.serve_with_incoming_shutdown(tls.clone().incoming(listener), stopped))
            }
            None => {
                let gateways = crate::ingest::twilio::routes(shared.clone());
                let incoming = crate::listener::split(listener, gateways, shutdown);
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
            }
        };
        tracing::info!(%addr, "callwatch serving");
        Ok(Self {
            addr,
            stop,
            task,
            grace,
            shared,
            tls,
        })
    }

    /// Re-reads the TLS certificate, key and client CA for new connections
    /// (SIGHUP); the open ones go on. Without `[tls]`, nothing to do.
    pub fn reload_tls(&self) -> Result<()> {
        self.tls.as_ref().map_or(Ok(()), |tls| tls.reload())
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

/// Health follows the store: NOT_SERVING (the whole server, and
/// `CallIngest`) while it cannot be written, SERVING again once it can.
async fn report_store_health(
    health: tonic_health::server::HealthReporter,
    mut healthy: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    use tonic_health::ServingStatus;
    loop {
        tokio::select! {
            changed = healthy.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let status = if *healthy.borrow_and_update() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status("", status).await;
        health
            .set_service_status(
                <pb::call_ingest_server::CallIngestServer<Ingest> as tonic::server::NamedService>::NAME,
                status,
            )
            .await;
    }
}

/// Serves until SIGINT or SIGTERM, then stops gracefully.
pub async fn run(config: ServeConfig) -> Result<()> {
    let server = Server::start(config).await?;
    println!("callwatch serving on {}", server.addr);
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hangup.recv() => match server.reload_tls() {
                Ok(()) => eprintln!("SIGHUP: TLS files re-read"),
                Err(e) => eprintln!("SIGHUP: the TLS files cannot be used, the previous ones stay: {e:#}"),
            },
        }
    }
    eprintln!("shutting down: finishing calls in progress");
    server.stop().await?;
    Ok(())
}
