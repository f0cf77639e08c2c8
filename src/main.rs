//! The `callwatch` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use std::sync::Arc;

use callwatch_asr::{model, transcribe};
use callwatch_client::Style;
use callwatch_core::capture::replay::{Pace, Replay};
use callwatch_core::rules::{config::Rulebook, sidecar};
use callwatch_core::sanitize::Repairs;
use callwatch_core::{audio, vad};
use callwatch_device::{self as device, DeviceSource};
use monitor::{Output, RuleSetup};

mod bench;
mod cli;
mod monitor;

use cli::{BenchCommand, Cli, Command, LiveArgs, ModelCommand, RulesCommand};

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// The given recordings, or else these bundled scenario calls.
fn or_scenarios(files: Vec<PathBuf>, names: &[&str]) -> Vec<PathBuf> {
    if !files.is_empty() {
        return files;
    }
    names
        .iter()
        .map(|n| PathBuf::from(format!("tests/fixtures/calls/{n}.wav")))
        .collect()
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CALLWATCH_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    install_panic_hook();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Panics print one line, never the default message and backtrace. A call's
/// front end (`call-*`) and a decode on a pool worker (`whisper-*`) are caught
/// by their owners, which report them with the call (`Call::join` → one
/// `error:` line and exit 1; the pool logs and sends an empty final), so the
/// hook only keeps those for `CALLWATCH_LOG=debug`. Any other panic is a bug
/// and is printed as an `error:` line naming its thread and place.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = callwatch_core::pipeline::panic_message(info.payload());
        if name.starts_with("call-") || name.starts_with("whisper-") {
            tracing::debug!("thread {name} panicked{place}: {message}");
        } else {
            eprintln!("error: internal fault in thread {name}{place}: {message}");
        }
    }));
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
            no_redact,
        } => {
            let recording = audio::read_wav(&file)?;
            let model = transcribe::Model::load(&model::locate(model.as_deref())?)?;
            let lines = transcribe::transcribe_recording(&model, &recording, threads, vad::VadConfig::default())?;
            let mut redactor = cli::redactor(no_redact);
            for line in lines {
                let line = match redactor.as_mut() {
                    Some(r) => line.redact(r),
                    None => line,
                };
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
            let repaired = recording.repairs;
            let source = Box::new(Replay::new(recording, pace));
            monitor::run(
                source,
                repaired,
                pool,
                &call_id_of(&file),
                Output::for_stdout(live.json),
                pace == Pace::RealTime,
                rules,
                live.redactor(),
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
        Command::GatewayReplay {
            file,
            protocol: _,
            url,
            auth_token,
            public_url,
            agent,
            team,
            call_id,
            events,
            fast,
            drop,
        } => {
            let controls = match events {
                Some(path) => sidecar::load(&path)?,
                None => sidecar::beside(&file)?,
            };
            let mut parameters = std::collections::HashMap::from([("agent".to_owned(), agent)]);
            parameters.extend(team.map(|t| ("team".to_owned(), t)));
            let call = callwatch_client::twilio::TwilioCall {
                call_sid: call_id
                    .unwrap_or_else(|| format!("{}-{}", call_id_of(&file), callwatch_core::time::now_unix_ms())),
                recording: audio::read_wav(&file)?,
                parameters,
                controls,
                fast,
                drop_at_end: drop,
            };
            let target = callwatch_client::twilio::Target {
                url,
                signed_url: public_url,
                auth_token,
            };
            match runtime()?.block_on(callwatch_client::twilio::replay(&target, call))? {
                None => println!("closed without stop: the call is dropped"),
                Some(closed) if closed.is_normal() => println!("{}", closed.reason),
                Some(closed) => anyhow::bail!("the server closed the stream: {} {}", closed.code, closed.reason),
            }
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
        Command::Audit {
            server,
            call_id,
            actor,
            json,
        } => {
            let filter = callwatch_proto::pb::ListAuditEventsRequest {
                call_id: call_id.unwrap_or_default(),
                actor: actor.unwrap_or_default(),
                ..Default::default()
            };
            let events = runtime()?.block_on(callwatch_client::audit::audit_events(&server.connection(), filter))?;
            for event in &events {
                println!("{}", callwatch_client::audit::show_audit_event(event, json));
            }
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
                no_redact: true,
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
                let repaired = recording.repairs;
                let source = Box::new(Replay::new(recording, Pace::Fast));
                monitor::run(
                    source,
                    repaired,
                    pool.clone(),
                    &call_id_of(&file),
                    output,
                    false,
                    Some(setup),
                    // Rule authoring on synthetic recordings: evidence as heard.
                    None,
                )?;
            }
            Ok(())
        }
        Command::Capture {
            agent,
            customer,
            rate,
            live,
        } => {
            let rules = live.rule_setup(None)?;
            let device = DeviceSource::open(agent.as_deref(), customer.as_deref(), rate)?;
            let source = Box::new(device.stop_on(stop_on_signal()?));
            let pool = live.pool()?;
            monitor::run(
                source,
                Repairs::default(),
                pool,
                "live",
                Output::for_stdout(live.json),
                true,
                rules,
                live.redactor(),
            )?;
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
            let files = or_scenarios(files, &["talk_over_call", "silence_call"]);
            bench::rule_latency(&files, &model::locate(model.as_deref())?, &rules)
        }
        Command::Bench {
            command: BenchCommand::Search { calls, runs },
        } => bench::search(&calls, runs),
        Command::Bench {
            command:
                BenchCommand::Alerts {
                    files,
                    calls,
                    model,
                    rules,
                    workers,
                },
        } => runtime()?.block_on(bench::alert_latency(&bench::AlertsOptions {
            files: or_scenarios(files, &["abuse_call", "jargon_call", "hold_violation_call"]),
            model: model::locate(model.as_deref())?,
            rules,
            calls,
            workers,
        })),
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
                BenchCommand::Accuracy {
                    files,
                    model,
                    threads,
                    pre_roll,
                    post_roll,
                    min_utterance,
                },
        } => {
            let d = vad::VadConfig::default();
            bench::accuracy(&bench::AccuracyOptions {
                files: if files.is_empty() {
                    bench::accuracy_files()
                } else {
                    files
                },
                model: model::locate(model.as_deref())?,
                threads,
                vad: vad::VadConfig {
                    pre_roll: pre_roll.unwrap_or(d.pre_roll),
                    post_roll: post_roll.unwrap_or(d.post_roll),
                    min_utterance: min_utterance.unwrap_or(d.min_utterance),
                    ..d
                },
            })
        }
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

/// Set by the first SIGINT/SIGTERM: `capture` then ends the call as a live
/// call ends (last words transcribed, summary printed, exit 0). The handler
/// resets itself, so a second Ctrl-C kills the process as usual.
fn stop_on_signal() -> Result<&'static std::sync::atomic::AtomicBool> {
    static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    extern "C" fn on_signal(_: libc::c_int) {
        // Only an atomic store: nothing else is safe in a signal handler.
        STOP.store(true, std::sync::atomic::Ordering::Release);
    }
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an
        // atomic (async-signal-safe); SA_RESTART keeps blocking reads (the
        // audio backend's) from failing with EINTR.
        let installed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART | libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if installed != 0 {
            anyhow::bail!("cannot handle signal {signal}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(&STOP)
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
