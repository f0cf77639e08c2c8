//! `callwatch monitor` and `callwatch capture`: one call through the live
//! pipeline, printed as it happens, then a summary.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Result;

use callwatch_asr::transcribe::pool::Pool;
use callwatch_core::alerts::RuleOutput;
use callwatch_core::audio::Channel;
use callwatch_core::capture::AudioSource;
use callwatch_core::events::Event;
use callwatch_core::pipeline::{Call, CallConfig, CallReport};
use callwatch_core::redact::Redactor;
use callwatch_core::rules::config::Rulebook;
use callwatch_core::rules::{CallRules, Control, Scorecard};
use callwatch_core::sanitize::Repairs;
use callwatch_core::time::round_ms;
use callwatch_core::transcript::TranscriptLine;

/// How the live conversation is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// JSON lines: transcript revisions, voice activity, then a summary.
    Json,
    /// A terminal: partials overwrite one status line, finals stay.
    Terminal,
    /// A pipe or file: finals only.
    Plain,
}

impl Output {
    pub fn for_stdout(json: bool) -> Self {
        if json {
            Self::Json
        } else if std::io::stdout().is_terminal() {
            Self::Terminal
        } else {
            Self::Plain
        }
    }
}

/// What `monitor` reports at the end of a call.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    #[serde(rename = "type")]
    kind: &'static str,
    pub call_id: String,
    pub audio_s: f64,
    pub speech_s_agent: f64,
    pub speech_s_customer: f64,
    pub utterances: u64,
    pub partials: u64,
    pub partials_shed: u64,
    pub overrun_samples: u64,
    /// Overruns the sound device's driver reported (audio lost before the
    /// rings); counted, never fatal. Always 0 for recordings.
    pub xruns: u64,
    /// Samples that arrived as NaN/inf and were replaced by silence.
    pub samples_silenced: u64,
    /// Samples outside [-1, 1] that were clipped.
    pub samples_clipped: u64,
    /// Alerts raised and not retracted.
    pub alerts: u64,
    /// End of speech to final text, seconds; only for real-time sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p50_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_p95_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_max_s: Option<f64>,
    #[serde(skip)]
    pub latencies: Vec<f64>,
}

/// Collects per-call figures from the event stream.
#[derive(Default)]
pub struct Tally {
    summary: Summary,
    speaking_since: [Option<f64>; 3],
}

impl Tally {
    pub fn observe(&mut self, event: &Event) {
        match event {
            Event::Voice {
                channel, speaking, t_s, ..
            } => {
                let slot = &mut self.speaking_since[*channel as usize];
                if *speaking {
                    *slot = Some(*t_s);
                } else if let Some(start) = slot.take() {
                    match channel {
                        Channel::Customer => self.summary.speech_s_customer += t_s - start,
                        _ => self.summary.speech_s_agent += t_s - start,
                    }
                }
            }
            Event::Transcript(t) if t.is_final => {
                self.summary.utterances += 1;
                self.summary.latencies.push(t.ready_after_s - t.end_s);
            }
            Event::Transcript(_) => self.summary.partials += 1,
            Event::Tick { .. } => {}
        }
    }

    fn observe_rule(&mut self, output: &RuleOutput) {
        match output {
            RuleOutput::Alert(_) => self.summary.alerts += 1,
            RuleOutput::Retract { .. } => self.summary.alerts -= 1,
        }
    }

    /// Closes the tally; `realtime` says whether wall time tracked call time,
    /// without which latency means nothing.
    /// `repairs`: what the whole audio path repaired, from the recording on.
    pub fn finish(
        mut self,
        call_id: &str,
        report: &CallReport,
        repairs: Repairs,
        shed: u64,
        realtime: bool,
    ) -> Summary {
        let s = &mut self.summary;
        s.kind = "summary";
        s.call_id = call_id.to_owned();
        s.audio_s = round_ms(report.audio_s);
        s.speech_s_agent = round_ms(s.speech_s_agent);
        s.speech_s_customer = round_ms(s.speech_s_customer);
        s.partials_shed = shed;
        s.overrun_samples = report.overrun_samples;
        s.xruns = report.xruns;
        s.samples_silenced = repairs.silenced;
        s.samples_clipped = repairs.clipped;
        if realtime && !s.latencies.is_empty() {
            s.latencies.sort_by(f64::total_cmp);
            s.latency_p50_s = Some(round_ms(percentile(&s.latencies, 0.50)));
            s.latency_p95_s = Some(round_ms(percentile(&s.latencies, 0.95)));
            s.latency_max_s = s.latencies.last().copied().map(round_ms);
        }
        self.summary
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A rulebook to run over the call, with its call-control events.
pub struct RuleSetup {
    pub rules: Arc<Rulebook>,
    pub controls: Vec<Control>,
}

/// Runs one call and prints it. `realtime`: the source delivers at the pace
/// of a live call. With `rules`, alerts are printed as they fire and the
/// scorecard at the end. `repaired`: samples already repaired before the
/// source (by `read_wav`), counted into the summary with the rings' own.
/// `redactor`: what is printed (transcripts, alerts' and the scorecard's
/// evidence) passes it; the rules read the words whole. A source that fails
/// mid-call (a device that stopped) still gets its summary printed; its
/// error is returned after it.
#[allow(clippy::too_many_arguments)]
pub fn run(
    source: Box<dyn AudioSource>,
    repaired: Repairs,
    pool: Arc<Pool>,
    call_id: &str,
    output: Output,
    realtime: bool,
    rules: Option<RuleSetup>,
    mut redactor: Option<Redactor>,
) -> Result<(Summary, Option<Scorecard>)> {
    let shed_before = pool.stats().partials_shed.load(Ordering::Relaxed);
    let config = CallConfig::new(call_id);
    let mut engine = rules.map(|r| CallRules::new(r.rules, call_id, config.vad.hangover, r.controls));
    let call = Call::start(source, pool.clone(), config)?;
    let mut tally = Tally::default();
    let mut out = std::io::stdout().lock();
    for event in call.events.iter() {
        tally.observe(&event);
        print_event(&mut out, &event, output, redactor.as_mut())?;
        for o in engine.as_mut().map(|e| e.feed(&event)).unwrap_or_default() {
            tally.observe_rule(&o);
            print_rule_output(&mut out, &redact_output(o, redactor.as_ref()), output)?;
        }
    }
    let (report, source_outcome) = call.join_parts()?;
    for o in engine.as_mut().map(|e| e.finish(report.audio_s)).unwrap_or_default() {
        tally.observe_rule(&o);
        print_rule_output(&mut out, &redact_output(o, redactor.as_ref()), output)?;
    }
    let shed = pool.stats().partials_shed.load(Ordering::Relaxed) - shed_before;
    let mut repairs = repaired;
    repairs.add(report.repairs);
    let summary = tally.finish(call_id, &report, repairs, shed, realtime);
    let scorecard = engine.map(|e| e.scorecard().clone());
    let shown = scorecard.clone().map(|mut card| {
        if let Some(r) = &redactor {
            for item in card.sections.iter_mut().flat_map(|s| s.items.iter_mut()) {
                item.evidence = r.evidence(&item.evidence).text;
            }
        }
        card
    });
    match output {
        Output::Json => {
            if let Some(card) = &shown {
                writeln!(out, "{}", card.to_json())?;
            }
            writeln!(out, "{}", serde_json::to_string(&summary)?)?
        }
        Output::Terminal | Output::Plain => {
            if output == Output::Terminal {
                write!(out, "\r\x1b[2K")?;
            }
            if let Some(card) = &shown {
                writeln!(out, "\n{card}")?;
            }
            print_summary(&mut out, &summary)?
        }
    }
    out.flush()?;
    source_outcome?;
    Ok((summary, scorecard))
}

/// An alert with its evidence redacted (the words that raised it).
fn redact_output(o: RuleOutput, redactor: Option<&Redactor>) -> RuleOutput {
    match (o, redactor) {
        (RuleOutput::Alert(mut a), Some(r)) => {
            a.evidence = r.evidence(&a.evidence).text;
            RuleOutput::Alert(a)
        }
        (o, _) => o,
    }
}

fn print_rule_output(out: &mut impl Write, o: &RuleOutput, output: Output) -> std::io::Result<()> {
    match (o, output) {
        (_, Output::Json) => writeln!(out, "{}", o.to_json()),
        (RuleOutput::Alert(a), Output::Terminal) => writeln!(out, "\r\x1b[2K\x1b[1;33m{a}\x1b[0m"),
        (RuleOutput::Alert(a), Output::Plain) => writeln!(out, "{a}"),
        (RuleOutput::Retract { id, .. }, _) => writeln!(out, "[alert {id} retracted: a later transcript disagreed]"),
    }
}

fn print_event(
    out: &mut impl Write,
    event: &Event,
    output: Output,
    redactor: Option<&mut Redactor>,
) -> std::io::Result<()> {
    let line = |t| {
        let line = TranscriptLine::from(t);
        match redactor {
            Some(r) => line.redact(r),
            None => line,
        }
    };
    match (event, output) {
        (Event::Transcript(t), Output::Json) => writeln!(out, "{}", line(t).to_json()),
        (
            Event::Voice {
                channel, speaking, t_s, ..
            },
            Output::Json,
        ) => writeln!(
            out,
            "{}",
            serde_json::json!({"type": "voice", "channel": channel, "speaking": speaking, "t_s": round_ms(*t_s)})
        ),
        (Event::Transcript(t), Output::Terminal) if !t.is_final => {
            // Erase the status line and show the newest partial on it, dimmed.
            write!(out, "\r\x1b[2K\x1b[2m{}…\x1b[0m", line(t))?;
            out.flush()
        }
        (Event::Transcript(t), Output::Terminal) => writeln!(out, "\r\x1b[2K{}", line(t)),
        (Event::Transcript(t), Output::Plain) if t.is_final => writeln!(out, "{}", line(t)),
        _ => Ok(()),
    }
}

fn print_summary(out: &mut impl Write, s: &Summary) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "audio {:.1} s · speech agent {:.1} s, customer {:.1} s · {} utterances · {} partials ({} shed) · {} samples overrun · {} alerts",
        s.audio_s, s.speech_s_agent, s.speech_s_customer, s.utterances, s.partials, s.partials_shed, s.overrun_samples, s.alerts
    )?;
    if s.xruns > 0 {
        writeln!(
            out,
            "device overruns (xruns): {} — audio was lost inside the driver",
            s.xruns
        )?;
    }
    if s.samples_silenced + s.samples_clipped > 0 {
        writeln!(
            out,
            "bad samples repaired: {} not a number (silenced) · {} out of range (clipped)",
            s.samples_silenced, s.samples_clipped
        )?;
    }
    match (s.latency_p50_s, s.latency_p95_s, s.latency_max_s) {
        (Some(p50), Some(p95), Some(max)) => writeln!(
            out,
            "end of speech → final text: p50 {p50:.3} s · p95 {p95:.3} s · max {max:.3} s"
        ),
        _ => writeln!(out, "latency: not measured (audio was not delivered in real time)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 10.0);
        assert_eq!(percentile(&v, 0.95), 19.0);
        assert_eq!(percentile(&[3.0], 0.95), 3.0);
    }
}
