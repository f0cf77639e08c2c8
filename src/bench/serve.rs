//! Load through the service: K softphones stream recorded calls in real
//! time over loopback gRPC into one in-process server, and one supervisor
//! dashboard follows the alert feed. `bench serve` and `bench alerts` time
//! what reaches the dashboard.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use super::{cpu_seconds, peak_rss_mb};
use crate::monitor::percentile;
use callwatch_client::{self as client, Connection, SoftphoneCall, WatchFilter};
use callwatch_core::audio::{self, Recording};
use callwatch_core::rules::Control;
use callwatch_proto::pb;
use callwatch_proto::pb::alert_event::Event as FeedEvent;
use callwatch_server::config::{ServeConfig, TokenEntry};

/// A recorded call and its call control (`CALL.events.jsonl`, if any).
pub struct Fixture {
    pub recording: Recording,
    pub controls: Vec<Control>,
}

impl Fixture {
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Self {
            recording: audio::read_wav(path)?,
            controls: callwatch_core::rules::sidecar::beside(path)?,
        })
    }
}

/// The service under load.
pub struct Service<'a> {
    pub model: &'a Path,
    pub rules: &'a Path,
    pub workers: usize,
}

/// An alert at the dashboard: which fixture its call streamed, and how long
/// after that softphone started it arrived.
pub struct Arrival {
    pub fixture: usize,
    pub alert: pb::Alert,
    pub after_start_s: f64,
}

/// One run of `k` calls: call `i` streams `fixtures[(first + i) % len]`;
/// starts are spread over the first 5 s, as a centre's calls do not begin
/// in lockstep.
pub struct Run {
    pub arrivals: Vec<Arrival>,
    /// Of one core, over the run's wall time.
    pub cpu_percent: f64,
}

impl Service<'_> {
    pub async fn run(&self, fixtures: &[Fixture], first: usize, k: usize) -> Result<Run> {
        ensure!(!fixtures.is_empty(), "no calls to stream");
        let token = |token: &str, role: &str| TokenEntry {
            token: token.into(),
            token_sha256: None,
            role: role.into(),
            name: None,
            // The load is real-time softphones, paced like any.
            fast: false,
        };
        let data = tempfile::tempdir()?;
        let mut config = ServeConfig {
            listen: "127.0.0.1:0".parse()?,
            data: data.path().to_owned(),
            model: Some(self.model.to_owned()),
            workers: self.workers,
            rules: Some(self.rules.to_owned()),
            ..ServeConfig::default()
        };
        config.limits.max_calls = k.max(1);
        config.auth.tokens = vec![token("bench-supervisor", "supervisor:*"), token("bench-admin", "admin")];
        let server = callwatch_server::server::Server::start(config).await?;
        let url = format!("http://{}", server.addr);
        let conn = |token: &str| Connection {
            server: url.clone(),
            token: token.into(),
            ca: None,
            identity: None,
        };
        // Call id → (fixture, when its softphone started sending).
        let started: Arc<Mutex<HashMap<String, (usize, Instant)>>> = Arc::default();
        let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::default();
        let dashboard = {
            let (supervisor, started, arrivals) = (conn("bench-supervisor"), started.clone(), arrivals.clone());
            tokio::spawn(async move {
                client::watch(&supervisor, WatchFilter::default(), "c0".into(), Some(k), |event| {
                    if let Some(FeedEvent::Alert(a)) = &event.event {
                        if let Some(&(fixture, t0)) = started.lock().expect("poisoned").get(&a.call_id) {
                            arrivals.lock().expect("poisoned").push(Arrival {
                                fixture,
                                alert: a.clone(),
                                after_start_s: t0.elapsed().as_secs_f64(),
                            });
                        }
                    }
                })
                .await
            })
        };
        let cpu_before = cpu_seconds();
        let wall = Instant::now();
        let phones: Vec<_> = (0..k)
            .map(|i| {
                let fixture = (first + i) % fixtures.len();
                let call = SoftphoneCall {
                    call_id: format!("load-{k}-{i}"),
                    agent_id: format!("agent{i}"),
                    team: "bench".into(),
                    recording: fixtures[fixture].recording.clone(),
                    controls: fixtures[fixture].controls.clone(),
                    fast: false,
                    drop_at_end: false,
                };
                let (admin, started) = (conn("bench-admin"), started.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs_f64(5.0 * i as f64 / k as f64)).await;
                    started
                        .lock()
                        .expect("poisoned")
                        .insert(call.call_id.clone(), (fixture, Instant::now()));
                    client::softphone(&admin, call, |_| {}).await
                })
            })
            .collect();
        for phone in phones {
            phone.await??;
        }
        tokio::time::timeout(Duration::from_secs(30), dashboard)
            .await
            .context("the dashboard did not see every call end")???;
        let cpu_percent = (cpu_seconds() - cpu_before) / wall.elapsed().as_secs_f64() * 100.0;
        server.stop().await?;
        let arrivals = std::mem::take(&mut *arrivals.lock().expect("poisoned"));
        Ok(Run { arrivals, cpu_percent })
    }
}

/// Latencies as `p50 p95 max` columns ("-" where there are none).
pub fn spread(latencies: &mut [f64]) -> [String; 3] {
    if latencies.is_empty() {
        return ["-".into(), "-".into(), "-".into()];
    }
    latencies.sort_by(f64::total_cmp);
    [
        percentile(latencies, 0.5),
        percentile(latencies, 0.95),
        latencies[latencies.len() - 1],
    ]
    .map(|s| format!("{s:.3}"))
}

pub struct ServeLoadOptions {
    pub file: PathBuf,
    pub model: PathBuf,
    pub rules: PathBuf,
    pub calls: Vec<usize>,
    pub workers: usize,
}

/// `callwatch bench serve`: K softphones stream the same call. Latency runs
/// from the end of the speech an alert is about (its `end_s`, in call time,
/// mapped to wall time from the moment the softphone started) to the alert
/// reaching the dashboard.
pub async fn serve_load(opts: &ServeLoadOptions) -> Result<()> {
    let fixture = Fixture::load(&opts.file)?;
    println!(
        "serve: {} ({:.1} s) streamed in real time by K softphones over loopback gRPC; {} workers on {} cores",
        opts.file.display(),
        fixture.recording.duration_s(),
        opts.workers,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>5} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8}",
        "calls", "alerts", "p50 s", "p95 s", "max s", "CPU %", "RSS MB"
    );
    let service = Service {
        model: &opts.model,
        rules: &opts.rules,
        workers: opts.workers,
    };
    let fixtures = [fixture];
    for &k in &opts.calls {
        let run = service.run(&fixtures, 0, k).await?;
        let mut latencies: Vec<f64> = run.arrivals.iter().map(|a| a.after_start_s - a.alert.end_s).collect();
        ensure!(
            !latencies.is_empty(),
            "{} raised no alerts to time",
            opts.file.display()
        );
        let [p50, p95, max] = spread(&mut latencies);
        println!(
            "{k:>5} {:>9} {p50:>9} {p95:>9} {max:>9} {:>6.0} {:>8.0}",
            latencies.len(),
            run.cpu_percent,
            peak_rss_mb()
        );
    }
    Ok(())
}
