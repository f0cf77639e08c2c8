//! `callwatch bench alerts`: how long after the offending words a
//! supervisor's dashboard shows the alert, with K calls streaming at once.
//!
//! Each alert is timed from the moment its condition was met in the
//! recording, taken from the reference, not from what the model heard:
//! - a forbidden phrase (profanity, jargon, …): the end of the phrase in the
//!   reference utterance. References time utterances, not words, so the
//!   word's end is placed by its position among the utterance's words
//!   (speech runs at an even pace within one utterance);
//! - a call-control sequence (hold without asking, no thanks after the
//!   hold): the control event, plus the time allowed when the rule waits
//!   for words after it.
//!
//! Alerts of other kinds (a greeting never said, talk-over) are not timed
//! here (`bench rules` times the acoustic ones), nor are alerts on words
//! the reference never says (false alarms). An offence counts once, at its
//! first alert.
//!
//! The peer, in the same run: the same rulebook with every word rule made
//! to wait for final transcripts (`on_partials = false`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::peak_rss_mb;
use super::reference::Reference;
use super::serve::{spread, Fixture, Service};
use callwatch_core::rules::config::{Kind, Rulebook, Speaker, Trigger};
use callwatch_core::rules::matcher::{normalise, Phrase, SENTENCE_END};
use callwatch_core::rules::Control;
use callwatch_proto::pb;

pub struct AlertsOptions {
    pub files: Vec<PathBuf>,
    pub model: PathBuf,
    pub rules: PathBuf,
    pub calls: Vec<usize>,
    pub workers: usize,
}

/// What an alert's condition was met by.
#[derive(Clone, Copy, PartialEq)]
enum Cause {
    Words,
    CallControl,
}

pub async fn alert_latency(opts: &AlertsOptions) -> Result<()> {
    let book = Rulebook::load(&opts.rules)?;
    let mut fixtures = Vec::new();
    let mut references = Vec::new();
    for file in &opts.files {
        fixtures.push(Fixture::load(file)?);
        references.push(Reference::beside(file, "bench alerts times each alert from the words")?);
    }
    let finals_only = finals_only_rules(&opts.rules)?;
    println!(
        "alerts: {} call(s) streamed in real time by K softphones; from the end of the words (or the \
         call-control event) to the alert at a dashboard; {} workers on {} cores",
        fixtures.len(),
        opts.workers,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>5} {:<12} {:>6} {:>8} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8} {:>6} {:>8}",
        "calls",
        "word rules",
        "words",
        "p50 s",
        "p95 s",
        "max s",
        "events",
        "p50 s",
        "p95 s",
        "max s",
        "CPU %",
        "RSS MB"
    );
    for &k in &opts.calls {
        for (mode, rules) in [
            ("on partials", opts.rules.as_path()),
            ("finals only", finals_only.path()),
        ] {
            let service = Service {
                model: &opts.model,
                rules,
                workers: opts.workers,
            };
            // Fewer calls than recordings: as many rounds as it takes to play each.
            // An offence's first alert is what tells the supervisor; a
            // final that replaces a partial's alert for the same words
            // comes later and is not counted again.
            let mut first_told: HashMap<(usize, String, String, u64), (Cause, f64)> = HashMap::new();
            let (mut cpu, mut rounds) = (0.0, 0);
            for first in (0..fixtures.len()).step_by(k.max(1)) {
                let run = service.run(&fixtures, first, k).await?;
                for arrival in &run.arrivals {
                    let fixture = &fixtures[arrival.fixture];
                    let a = &arrival.alert;
                    let Some((cause, met)) = condition_met(&book, &references[arrival.fixture], &fixture.controls, a)
                    else {
                        continue;
                    };
                    let latency = arrival.after_start_s - met;
                    // Call ids repeat from one round to the next.
                    let offence = (first, a.call_id.clone(), a.rule_id.clone(), met.to_bits());
                    let told = first_told.entry(offence).or_insert((cause, latency));
                    told.1 = told.1.min(latency);
                }
                cpu += run.cpu_percent;
                rounds += 1;
            }
            let (mut words, mut events) = (Vec::new(), Vec::new());
            for (cause, latency) in first_told.into_values() {
                match cause {
                    Cause::Words => words.push(latency),
                    Cause::CallControl => events.push(latency),
                }
            }
            let (n_words, n_events) = (words.len(), events.len());
            let [w50, w95, wmax] = spread(&mut words);
            let [e50, e95, emax] = spread(&mut events);
            println!(
                "{k:>5} {mode:<12} {n_words:>6} {w50:>8} {w95:>8} {wmax:>8} {n_events:>7} {e50:>8} {e95:>8} {emax:>8} {:>6.0} {:>8.0}",
                cpu / f64::from(rounds),
                peak_rss_mb()
            );
        }
    }
    Ok(())
}

/// The rulebook at `path` with every word rule waiting for finals.
fn finals_only_rules(path: &Path) -> Result<tempfile::NamedTempFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: toml::Table = toml::from_str(&text).with_context(|| format!("{}: not TOML", path.display()))?;
    if let Some(toml::Value::Array(rules)) = doc.get_mut("rule") {
        for rule in rules.iter_mut().filter_map(toml::Value::as_table_mut) {
            if rule.contains_key("on_partials") {
                rule.insert("on_partials".into(), toml::Value::Boolean(false));
            }
        }
    }
    let file = tempfile::Builder::new().suffix(".toml").tempfile()?;
    std::fs::write(file.path(), toml::to_string(&doc)?)?;
    Ok(file)
}

/// When, in call time, the recording met the alert's condition; `None` for
/// kinds this bench does not time, or a phrase the reference never says
/// (a false alarm).
fn condition_met(
    book: &Rulebook,
    reference: &Reference,
    controls: &[Control],
    alert: &pb::Alert,
) -> Option<(Cause, f64)> {
    let rule = book.rules.iter().find(|r| *r.id == alert.rule_id)?;
    let event_near = |kind| {
        controls
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.t_s)
            .min_by(|a, b| (a - alert.start_s).abs().total_cmp(&(b - alert.start_s).abs()))
    };
    match &rule.kind {
        Kind::ForbiddenPhrase { party, phrases, .. } => {
            phrase_end(reference, *party, phrases, alert).map(|t| (Cause::Words, t))
        }
        Kind::Sequence {
            before: true,
            then: Trigger::Event(kind),
            ..
        } => event_near(*kind).map(|t| (Cause::CallControl, t)),
        Kind::Sequence {
            before: false,
            first: Trigger::Event(kind),
            within_s,
            ..
        } => event_near(*kind).map(|t| (Cause::CallControl, t + within_s)),
        _ => None,
    }
}

/// The end of the first of `phrases` said by `party` in the reference
/// utterance nearest the alert's span.
fn phrase_end(reference: &Reference, party: Speaker, phrases: &[Phrase], alert: &pb::Alert) -> Option<f64> {
    let channel = match party {
        Speaker::Agent => "agent",
        Speaker::Customer => "customer",
    };
    let distance = |start: f64, end: f64| (alert.start_s - end).max(start - alert.end_s).max(0.0);
    reference
        .utterances
        .iter()
        .filter(|u| u.channel == channel)
        .filter_map(|u| {
            let said: Vec<String> = normalise(&u.text).into_iter().filter(|w| w != SENTENCE_END).collect();
            let end = phrases
                .iter()
                .filter_map(|p| {
                    let words: Vec<String> = normalise(&p.text).into_iter().filter(|w| w != SENTENCE_END).collect();
                    said.windows(words.len().max(1))
                        .position(|w| w == words.as_slice())
                        .map(|i| i + words.len())
                })
                .min()?;
            let t = u.start_s + (u.end_s - u.start_s) * end as f64 / said.len() as f64;
            Some((distance(u.start_s, u.end_s), t))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, t)| t)
}
