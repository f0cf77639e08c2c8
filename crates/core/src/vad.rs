//! Voice activity and utterance cutting, one channel at a time.
//!
//! Each 16 ms frame is scored by earshot, a small neural voice detector (pure
//! Rust, ~8 KiB of state, thousands of times faster than real time; see
//! ARCHITECTURE.md for why it was chosen over an energy gate). Scores become
//! speech and silence with two hysteresis rules: speech starts after
//! `min_speech` of voiced frames, and ends after `hangover` of silence. An
//! utterance longer than `max_utterance` is cut at its quietest frame so
//! Whisper never sees more than its 30 s window.
//!
//! The [`Segmenter`] is streaming: feed it any number of samples, collect the
//! events. Offline transcription feeds a whole file; live monitoring feeds
//! what the ring buffer delivers.

use std::collections::VecDeque;

use crate::audio::SAMPLE_RATE;

/// earshot's fixed frame: 256 samples at 16 kHz.
pub const FRAME: usize = 256;
const FRAME_S: f64 = FRAME as f64 / SAMPLE_RATE as f64;

/// Tuning of the detector and the segmenter. Durations in seconds.
#[derive(Debug, Clone, Copy)]
pub struct VadConfig {
    /// earshot score at or above which a frame is voiced.
    pub threshold: f32,
    /// Voiced time needed before speech is declared (rejects clicks).
    pub min_speech: f64,
    /// Silence after which speech is over and the utterance is final.
    pub hangover: f64,
    /// Audio kept before the detected onset, so Whisper hears the first phoneme whole.
    pub pre_roll: f64,
    /// Audio kept after the last voiced frame.
    pub post_roll: f64,
    /// Shortest voiced span decoded: speech that ends sooner (a cough, a
    /// click, a breath the detector took for speech) keeps its voice events
    /// but is not handed to Whisper, which would make words of it. An
    /// utterance that has already had a partial is always finalised.
    pub min_utterance: f64,
    /// Longest utterance; a longer one is cut at its quietest point.
    pub max_utterance: f64,
    /// While speech goes on, a partial (audio so far) is offered this often;
    /// zero turns partials off (offline transcription).
    pub partial_interval: f64,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_speech: 0.096,
            hangover: 0.5,
            pre_roll: 0.2,
            post_roll: 0.15,
            min_utterance: 0.0,
            max_utterance: 15.0,
            partial_interval: 0.0,
        }
    }
}

/// A stretch of speech, with the audio Whisper should hear.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// Numbered from 0 per channel; partials and the final of one utterance share it.
    pub id: u64,
    /// Onset of speech, seconds from the start of the channel.
    pub start_s: f64,
    /// End of the last voiced frame.
    pub end_s: f64,
    /// Audio from `start_s - pre_roll` to `end_s + post_roll` (clamped to the stream).
    pub samples: Vec<f32>,
}

/// What the segmenter reports, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum VadEvent {
    SpeechStart {
        t_s: f64,
    },
    SpeechEnd {
        t_s: f64,
    },
    /// Speech so far of an utterance still going on (`end_s` = now).
    Partial(Utterance),
    /// A finished utterance: the last word on it.
    Utterance(Utterance),
}

#[derive(Debug)]
enum State {
    /// `voiced_run` frames in a row have been voiced, not yet enough to start.
    Silence { voiced_run: usize },
    Speech {
        id: u64,
        /// Stream position of the last partial offered (or of the onset).
        last_partial: u64,
        /// First sample of `audio` in stream samples.
        audio_start: u64,
        onset: u64,
        audio: Vec<f32>,
        /// RMS of each frame since `audio_start`, to find a quiet cut point.
        frame_rms: Vec<f32>,
        /// Stream sample just after the last voiced frame.
        last_voiced_end: u64,
    },
}

pub struct Segmenter {
    cfg: VadConfig,
    detector: Box<earshot::Detector>,
    /// Samples not yet making a whole frame.
    partial: Vec<f32>,
    /// Recent audio kept while silent, for the pre-roll.
    history: VecDeque<f32>,
    /// Stream samples consumed into whole frames.
    position: u64,
    state: State,
    min_speech_frames: usize,
    next_id: u64,
    /// Stream position just after the last frame voiced within speech.
    voiced_until: u64,
}

fn secs(samples: u64) -> f64 {
    samples as f64 / SAMPLE_RATE as f64
}

fn samples(seconds: f64) -> usize {
    (seconds * SAMPLE_RATE as f64).round() as usize
}

impl Segmenter {
    pub fn new(cfg: VadConfig) -> Self {
        Self {
            cfg,
            detector: earshot::Detector::default_boxed(),
            partial: Vec::with_capacity(FRAME),
            history: VecDeque::new(),
            position: 0,
            state: State::Silence { voiced_run: 0 },
            min_speech_frames: (cfg.min_speech / FRAME_S).ceil().max(1.0) as usize,
            next_id: 0,
            voiced_until: 0,
        }
    }

    /// Seconds of audio consumed so far.
    pub fn position_s(&self) -> f64 {
        secs(self.position)
    }

    /// End of the last voiced frame of speech: unlike a speech-end event,
    /// known without waiting for the hangover.
    pub fn voiced_until_s(&self) -> f64 {
        secs(self.voiced_until)
    }

    /// Onset of the utterance in progress, if any.
    pub fn open_onset_s(&self) -> Option<f64> {
        match &self.state {
            State::Speech { onset, .. } => Some(secs(*onset)),
            State::Silence { .. } => None,
        }
    }

    /// Feeds 16 kHz samples; returns the events they complete.
    pub fn push(&mut self, mut input: &[f32], events: &mut Vec<VadEvent>) {
        while !input.is_empty() {
            let take = (FRAME - self.partial.len()).min(input.len());
            self.partial.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.partial.len() == FRAME {
                let frame = std::mem::take(&mut self.partial);
                self.frame(&frame, events);
                self.partial = frame;
                self.partial.clear();
            }
        }
    }

    /// Ends the stream: an utterance still open is emitted as final.
    pub fn finish(&mut self, events: &mut Vec<VadEvent>) {
        let rest = std::mem::take(&mut self.partial);
        if let State::Speech { audio, .. } = &mut self.state {
            audio.extend_from_slice(&rest);
        }
        self.position += rest.len() as u64;
        if matches!(self.state, State::Speech { .. }) {
            self.end_speech(events);
        }
    }

    fn frame(&mut self, frame: &[f32], events: &mut Vec<VadEvent>) {
        let mut clamped = [0f32; FRAME];
        for (c, s) in clamped.iter_mut().zip(frame) {
            *c = s.clamp(-1.0, 1.0);
        }
        let voiced = self.detector.predict_f32(&clamped) >= self.cfg.threshold;
        self.position += FRAME as u64;
        let hangover = samples(self.cfg.hangover) as u64;

        match &mut self.state {
            State::Silence { voiced_run } => {
                *voiced_run = if voiced { *voiced_run + 1 } else { 0 };
                self.history.extend(frame);
                let keep = samples(self.cfg.pre_roll) + self.min_speech_frames * FRAME;
                while self.history.len() > keep {
                    self.history.pop_front();
                }
                if *voiced_run >= self.min_speech_frames {
                    let onset = self.position - (*voiced_run * FRAME) as u64;
                    let audio: Vec<f32> = self.history.drain(..).collect();
                    let audio_start = self.position - audio.len() as u64;
                    let frame_rms = audio.chunks(FRAME).map(rms).collect();
                    events.push(VadEvent::SpeechStart { t_s: secs(onset) });
                    self.next_id += 1;
                    self.state = State::Speech {
                        id: self.next_id - 1,
                        last_partial: onset,
                        audio_start,
                        onset,
                        audio,
                        frame_rms,
                        last_voiced_end: self.position,
                    };
                }
            }
            State::Speech {
                id,
                last_partial,
                audio,
                frame_rms,
                last_voiced_end,
                onset,
                audio_start,
            } => {
                audio.extend_from_slice(frame);
                frame_rms.push(rms(frame));
                if voiced {
                    *last_voiced_end = self.position;
                }
                if self.position - *last_voiced_end >= hangover {
                    self.end_speech(events);
                } else if secs(self.position - *onset) >= self.cfg.max_utterance {
                    self.cut_long(events);
                } else if self.cfg.partial_interval > 0.0
                    && secs(self.position - *last_partial) >= self.cfg.partial_interval
                {
                    *last_partial = self.position;
                    // The audio up to now, trimmed of trailing silence beyond the post-roll.
                    let keep =
                        (*last_voiced_end + samples(self.cfg.post_roll) as u64).min(self.position) - *audio_start;
                    events.push(VadEvent::Partial(Utterance {
                        id: *id,
                        start_s: secs(*onset),
                        end_s: secs(*last_voiced_end),
                        samples: audio[..keep as usize].to_vec(),
                    }));
                }
            }
        }
        if voiced && matches!(self.state, State::Speech { .. }) {
            self.voiced_until = self.position;
        }
    }

    /// Closes the open utterance at its last voiced frame.
    fn end_speech(&mut self, events: &mut Vec<VadEvent>) {
        let State::Speech {
            id,
            audio_start,
            onset,
            mut audio,
            last_voiced_end,
            last_partial,
            ..
        } = std::mem::replace(&mut self.state, State::Silence { voiced_run: 0 })
        else {
            return;
        };
        let end = last_voiced_end.min(self.position);
        let keep_until = (end + samples(self.cfg.post_roll) as u64).min(audio_start + audio.len() as u64);
        // The tail after the post-roll is silence; it becomes the next pre-roll.
        let tail = audio.split_off((keep_until - audio_start) as usize);
        self.history.clear();
        self.history.extend(tail);
        events.push(VadEvent::SpeechEnd { t_s: secs(end) });
        let partial_sent = last_partial != onset;
        if secs(end.saturating_sub(onset)) < self.cfg.min_utterance && !partial_sent {
            return;
        }
        events.push(VadEvent::Utterance(Utterance {
            id,
            start_s: secs(onset),
            end_s: secs(end),
            samples: audio,
        }));
    }

    /// Cuts an over-long utterance at the quietest frame of its second half;
    /// speech continues from there as a new utterance.
    fn cut_long(&mut self, events: &mut Vec<VadEvent>) {
        let State::Speech {
            id,
            last_partial,
            audio_start,
            onset,
            audio,
            frame_rms,
            last_voiced_end,
        } = &mut self.state
        else {
            return;
        };
        let half = frame_rms.len() / 2;
        let quietest = (half..frame_rms.len())
            .min_by(|&a, &b| frame_rms[a].total_cmp(&frame_rms[b]))
            .unwrap_or(frame_rms.len() - 1);
        // Frames are aligned to the end of `audio` (the pre-roll need not be whole frames).
        let cut = audio.len().saturating_sub((frame_rms.len() - quietest) * FRAME);
        let rest = audio.split_off(cut);
        let cut_at = *audio_start + cut as u64;
        events.push(VadEvent::Utterance(Utterance {
            id: *id,
            start_s: secs(*onset),
            end_s: secs(cut_at),
            samples: std::mem::replace(audio, rest),
        }));
        frame_rms.drain(..quietest);
        self.next_id += 1;
        *id = self.next_id - 1;
        *audio_start = cut_at;
        *onset = cut_at;
        *last_partial = cut_at;
        *last_voiced_end = (*last_voiced_end).max(cut_at);
    }
}

fn rms(frame: &[f32]) -> f32 {
    (frame.iter().map(|s| s * s).sum::<f32>() / frame.len().max(1) as f32).sqrt()
}

/// Cuts a whole channel into utterances (offline use).
pub fn utterances(samples: &[f32], cfg: VadConfig) -> Vec<Utterance> {
    let mut seg = Segmenter::new(cfg);
    let mut events = Vec::new();
    seg.push(samples, &mut events);
    seg.finish(&mut events);
    events
        .into_iter()
        .filter_map(|e| match e {
            VadEvent::Utterance(u) => Some(u),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{read_wav, Channel};

    fn fixture(name: &str) -> Vec<(Channel, Vec<f32>)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(name);
        read_wav(&path).unwrap().to_16k().unwrap().channels
    }

    #[derive(serde::Deserialize)]
    struct Reference {
        utterances: Vec<RefUtterance>,
    }
    #[derive(serde::Deserialize)]
    struct RefUtterance {
        channel: String,
        start_s: f64,
        end_s: f64,
    }

    /// On a synthetic call whose timing is known exactly, every detected
    /// utterance starts and ends within 300 ms of the reference.
    #[test]
    fn boundaries_match_the_reference_call() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/calls");
        let reference: Reference =
            serde_json::from_str(&std::fs::read_to_string(dir.join("basic_call.ref.json")).unwrap()).unwrap();
        for (channel, samples) in fixture("calls/basic_call.wav") {
            let found = utterances(&samples, VadConfig::default());
            let want: Vec<_> = reference
                .utterances
                .iter()
                .filter(|u| u.channel == channel.name())
                .collect();
            assert_eq!(found.len(), want.len(), "{channel:?}: {found:?}");
            for (f, w) in found.iter().zip(want) {
                assert!(
                    (f.start_s - w.start_s).abs() <= 0.3,
                    "{channel:?} start {} vs {}",
                    f.start_s,
                    w.start_s
                );
                assert!(
                    (f.end_s - w.end_s).abs() <= 0.3,
                    "{channel:?} end {} vs {}",
                    f.end_s,
                    w.end_s
                );
            }
        }
    }

    #[test]
    fn silence_and_noise_floor_are_not_speech() {
        assert!(utterances(&vec![0.0; 16_000 * 3], VadConfig::default()).is_empty());
        let hiss: Vec<f32> = (0..48_000u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 16) as f32 / 65_536.0 - 0.5) * 0.002)
            .collect();
        assert!(utterances(&hiss, VadConfig::default()).is_empty());
    }

    /// Partials of an utterance share its id, grow, and all come before its final.
    #[test]
    fn partials_precede_their_final() {
        let (_, samples) = &fixture("jfk.wav")[0];
        let cfg = VadConfig {
            partial_interval: 1.0,
            ..VadConfig::default()
        };
        let mut seg = Segmenter::new(cfg);
        let mut events = Vec::new();
        for block in samples.chunks(320) {
            seg.push(block, &mut events);
        }
        seg.finish(&mut events);
        let mut open: Option<(u64, f64)> = None;
        let mut partials = 0;
        for e in &events {
            match e {
                VadEvent::Partial(u) => {
                    if let Some((id, end)) = open {
                        assert!(u.id == id && u.end_s >= end, "{id} {end} then {} {}", u.id, u.end_s);
                    }
                    open = Some((u.id, u.end_s));
                    partials += 1;
                }
                VadEvent::Utterance(u) => {
                    if let Some((id, _)) = open.take() {
                        assert_eq!(id, u.id);
                    }
                }
                _ => {}
            }
        }
        assert!(partials >= 4, "{partials} partials");
    }

    #[test]
    fn long_speech_is_cut_at_quiet_points() {
        let (_, samples) = &fixture("jfk.wav")[0];
        let cfg = VadConfig {
            max_utterance: 2.0,
            hangover: 5.0,
            ..VadConfig::default()
        };
        let found = utterances(samples, cfg);
        assert!(found.len() >= 4, "{found:?}");
        assert!(found.iter().all(|u| u.end_s - u.start_s <= 2.0 + 1e-9));
        assert!(found
            .windows(2)
            .all(|w| w[0].end_s <= w[1].start_s && w[0].id < w[1].id));
    }

    /// Speech shorter than `min_utterance` keeps its voice events but is not
    /// decoded; speech at least that long is.
    #[test]
    fn speech_shorter_than_the_minimum_is_not_decoded() {
        let (_, samples) = &fixture("jfk.wav")[0];
        let mut seg = Segmenter::new(VadConfig {
            min_utterance: 60.0,
            ..VadConfig::default()
        });
        let mut events = Vec::new();
        seg.push(samples, &mut events);
        seg.finish(&mut events);
        assert!(events.iter().any(|e| matches!(e, VadEvent::SpeechEnd { .. })));
        assert!(!events.iter().any(|e| matches!(e, VadEvent::Utterance(_))));
        let cfg = VadConfig {
            min_utterance: 0.25,
            ..VadConfig::default()
        };
        assert!(!utterances(samples, cfg).is_empty());
    }

    #[test]
    fn end_of_stream_flushes_open_speech() {
        let (_, samples) = &fixture("jfk.wav")[0];
        // Stop mid-word, 1.5 s in.
        let found = utterances(&samples[..24_000], VadConfig::default());
        assert_eq!(found.len(), 1);
        assert!(found[0].end_s > 1.2, "{:?}", found[0].end_s);
    }
}
