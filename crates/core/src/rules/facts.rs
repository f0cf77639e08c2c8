//! What is known about a call, each fact stamped with its call time: speech
//! segments per party, holds, and the two clocks that say how far the facts
//! are complete.
//!
//! Rules read facts by call time, never by arrival, so the same facts give
//! the same verdicts however they arrived. A rule decides about a moment
//! only once the clock on which it judges has passed it: the voice clock for
//! acoustic rules, the words clock for rules about what was said.

use crate::audio::Channel;

use super::config::{ControlKind, Speaker};
use super::names::CallerName;
use super::Control;

/// Speech segments of one party, oldest first.
#[derive(Debug, Default)]
pub struct Track {
    /// (start, end); end is `None` while speaking.
    pub segments: Vec<(f64, Option<f64>)>,
}

impl Track {
    fn update(&mut self, speaking: bool, t: f64) {
        if speaking {
            self.segments.push((t, None));
        } else if let Some(last) = self.segments.last_mut() {
            last.1.get_or_insert(t);
        }
    }

    fn speaking(&self) -> bool {
        self.segments.last().is_some_and(|s| s.1.is_none())
    }

    fn last_end(&self) -> f64 {
        self.segments.iter().rev().find_map(|s| s.1).unwrap_or(0.0)
    }
}

/// The parties a channel's speech belongs to.
pub fn speakers(channel: Channel) -> &'static [Speaker] {
    match channel {
        Channel::Agent => &[Speaker::Agent],
        Channel::Customer => &[Speaker::Customer],
        // A mono recording mixes both parties: any party's rule may apply.
        Channel::Mono => &[Speaker::Agent, Speaker::Customer],
    }
}

#[derive(Debug, Default)]
pub struct Facts {
    /// Voice clock: audio analysed up to here.
    pub now: f64,
    /// Words clock: every utterance begun before it has its final delivered.
    pub words_now: f64,
    agent: Track,
    customer: Track,
    /// Holds, oldest first: (start, end); end is `None` while on hold.
    pub holds: Vec<(f64, Option<f64>)>,
    /// Reported end of each party's last voiced frame (agent, customer).
    voiced: Option<[f64; 2]>,
    /// How long a reported end of speech lags the audio (the hangover).
    pub voice_settle_s: f64,
    /// The call is over: every voice event has been delivered.
    complete: bool,
    /// The name the caller gave, as far as heard.
    pub caller: CallerName,
}

impl Facts {
    pub fn new(voice_settle_s: f64) -> Self {
        Self {
            voice_settle_s,
            ..Self::default()
        }
    }

    pub fn track(&self, s: Speaker) -> &Track {
        match s {
            Speaker::Agent => &self.agent,
            Speaker::Customer => &self.customer,
        }
    }

    pub fn voice(&mut self, channel: Channel, speaking: bool, t_s: f64) {
        for s in speakers(channel) {
            match s {
                Speaker::Agent => self.agent.update(speaking, t_s),
                Speaker::Customer => self.customer.update(speaking, t_s),
            }
        }
    }

    pub fn set_voiced(&mut self, voiced: Option<[f64; 2]>) {
        if voiced.is_some() {
            self.voiced = voiced;
        }
    }

    /// Moves the clocks forward (never back); the words clock never passes
    /// the voice clock.
    pub fn advance(&mut self, t_s: f64, words_s: f64) {
        self.now = self.now.max(t_s);
        self.words_now = self.words_now.max(words_s.min(t_s));
    }

    pub fn control(&mut self, c: &Control) {
        let on_hold = self.holds.last().is_some_and(|h| h.1.is_none());
        match c.kind {
            ControlKind::Hold if !on_hold => self.holds.push((c.t_s, None)),
            ControlKind::Unhold if on_hold => {
                if let Some(h) = self.holds.last_mut() {
                    h.1 = Some(c.t_s);
                }
            }
            _ => {}
        }
    }

    /// The call ended at `end`: a hold still on ends with it, and every
    /// voice event is in.
    pub fn end(&mut self, end: f64) {
        if let Some(h) = self.holds.last_mut() {
            h.1.get_or_insert(end.max(h.0));
        }
        self.complete = true;
    }

    /// Up to when voice activity is known: the clock itself when the source
    /// reports voiced frames (or the call is over), else the clock less the
    /// hangover.
    pub fn voice_known(&self) -> f64 {
        if self.voiced.is_some() || self.complete {
            self.now
        } else {
            self.now - self.voice_settle_s
        }
    }

    /// Up to when every voice event (starts and ends) has been delivered.
    pub fn segments_known(&self) -> f64 {
        if self.complete {
            self.now
        } else {
            self.now - self.voice_settle_s
        }
    }

    /// The end of a party's speech so far, as far as it is known.
    pub fn voiced_until(&self, s: Speaker) -> f64 {
        match self.voiced {
            Some(v) => v[s as usize],
            None if self.track(s).speaking() => self.voice_known(),
            None => self.track(s).last_end(),
        }
    }

    /// Stretches of `[from, to)` in which none of `parties` was heard and the
    /// call was not on hold, oldest first; the last may run on past `to`.
    pub fn quiet(&self, parties: &[Speaker], from: f64, to: f64) -> Vec<(f64, f64)> {
        let mut busy: Vec<(f64, f64)> = Vec::new();
        for &s in parties {
            let segments = &self.track(s).segments;
            // Segments are in time order and do not overlap: skip those over before `from`.
            let first = segments.partition_point(|seg| seg.1.is_some_and(|e| e <= from));
            for &(start, end) in &segments[first..] {
                // An open segment runs to its last voiced frame; a report older
                // than the segment's start says nothing of it yet.
                let end = end.unwrap_or_else(|| match self.voiced_until(s) {
                    v if v >= start => v,
                    _ => self.voice_known().max(start),
                });
                busy.push((start, end));
            }
        }
        for &(start, end) in &self.holds {
            if end.is_none_or(|e| e > from) {
                busy.push((start, end.unwrap_or(f64::INFINITY)));
            }
        }
        busy.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut gaps = Vec::new();
        let mut at = from;
        for (start, end) in busy {
            if start >= to {
                break;
            }
            if start > at {
                gaps.push((at, start));
            }
            at = at.max(end);
        }
        if at < to {
            gaps.push((at, to));
        }
        gaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_stretches_skip_speech_and_holds() {
        let mut f = Facts::new(0.5);
        f.voice(Channel::Agent, true, 1.0);
        f.voice(Channel::Agent, false, 3.0);
        f.voice(Channel::Customer, true, 2.0);
        f.voice(Channel::Customer, false, 5.0);
        f.control(&Control {
            t_s: 8.0,
            kind: ControlKind::Hold,
            to: None,
        });
        f.control(&Control {
            t_s: 9.0,
            kind: ControlKind::Unhold,
            to: None,
        });
        let both = [Speaker::Agent, Speaker::Customer];
        assert_eq!(f.quiet(&both, 0.0, 12.0), [(0.0, 1.0), (5.0, 8.0), (9.0, 12.0)]);
        assert_eq!(f.quiet(&[Speaker::Agent], 2.5, 12.0), [(3.0, 8.0), (9.0, 12.0)]);
    }
}
