//! What a live call is doing, as one label for the wall of calls.

use callwatch_core::audio::Channel;
use callwatch_core::rules::config::{ControlKind, Kind, Rulebook};

/// Labels a live call from its call-control events and voice activity.
#[derive(Debug)]
pub struct Activity {
    held: bool,
    muted: bool,
    transferring: bool,
    /// Parties speaking now, in the order they started.
    pub speaking: Vec<Channel>,
    /// Call time of the last start or end of speech.
    last_voice_s: f64,
    /// Nobody speaking this long (off hold) is dead air; `None`: the
    /// rulebook has no dead-air rule, so silence is never called dead air.
    dead_air_s: Option<f64>,
}

/// The rulebook's own dead-air threshold, so the wall and the alert agree.
pub fn dead_air_s(book: &Rulebook) -> Option<f64> {
    book.rules
        .iter()
        .filter_map(|r| match r.kind {
            Kind::DeadAir { min_s } => Some(min_s),
            _ => None,
        })
        .reduce(f64::min)
}

impl Activity {
    pub fn new(dead_air_s: Option<f64>) -> Self {
        Self {
            held: false,
            muted: false,
            transferring: false,
            speaking: Vec::new(),
            last_voice_s: 0.0,
            dead_air_s,
        }
    }

    pub fn control(&mut self, kind: ControlKind) {
        match kind {
            ControlKind::Hold => self.held = true,
            ControlKind::Unhold => self.held = false,
            ControlKind::Mute => self.muted = true,
            ControlKind::Unmute => self.muted = false,
            ControlKind::Transfer => self.transferring = true,
            ControlKind::End | ControlKind::Dropped => {}
        }
    }

    pub fn voice(&mut self, channel: Channel, speaking: bool, t_s: f64) {
        self.speaking.retain(|&c| c != channel);
        if speaking {
            self.speaking.push(channel);
        }
        self.last_voice_s = t_s;
    }

    /// The label at call time `now_s`; the first that applies wins.
    pub fn label(&self, now_s: f64) -> &'static str {
        match self {
            Self { transferring: true, .. } => "transferring",
            Self { held: true, .. } => "on hold",
            Self { muted: true, .. } => "muted",
            Self { speaking, .. } if !speaking.is_empty() => "talking",
            Self {
                dead_air_s: Some(limit),
                ..
            } if now_s - self.last_voice_s >= *limit => "dead air",
            _ => "silent",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(extra: &str) -> Rulebook {
        let text = format!(
            "version = 1\n\n[[rule]]\nid = \"rude\"\nkind = \"forbidden_phrase\"\nsection = \"s\"\nitem = \"i\"\nseverity = \"info\"\n\
             audience = [\"agent\"]\nmessage = \"m\"\nparty = \"agent\"\nphrases = [\"whatever\"]\n{extra}"
        );
        Rulebook::parse(&text, "test.toml").unwrap()
    }

    const DEAD_AIR: &str = "[[rule]]\nid = \"quiet\"\nkind = \"silence\"\nsection = \"s\"\nitem = \"i\"\n\
                            severity = \"info\"\naudience = [\"agent\"]\nmessage = \"m\"\nmode = \"dead_air\"\nmin_s = 7.5\n";

    #[test]
    fn the_dead_air_threshold_is_the_rulebooks() {
        assert_eq!(dead_air_s(&book(DEAD_AIR)), Some(7.5));
        assert_eq!(dead_air_s(&book("")), None);
        let default =
            Rulebook::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/default.toml")).unwrap();
        assert_eq!(dead_air_s(&default), Some(10.0));
    }

    #[test]
    fn silence_becomes_dead_air_at_the_rulebooks_threshold() {
        let mut a = Activity::new(Some(7.5));
        a.voice(Channel::Agent, true, 1.0);
        assert_eq!(a.label(3.0), "talking");
        a.voice(Channel::Agent, false, 4.0);
        assert_eq!(a.label(11.4), "silent");
        assert_eq!(a.label(11.5), "dead air");
        // Without a dead-air rule, silence stays silence.
        let mut a = Activity::new(None);
        a.voice(Channel::Agent, false, 4.0);
        assert_eq!(a.label(1000.0), "silent");
    }

    #[test]
    fn call_control_outranks_voice() {
        let mut a = Activity::new(Some(5.0));
        a.voice(Channel::Customer, true, 1.0);
        a.voice(Channel::Agent, true, 1.5);
        assert_eq!(a.speaking, [Channel::Customer, Channel::Agent]);
        a.control(ControlKind::Mute);
        assert_eq!(a.label(2.0), "muted");
        a.control(ControlKind::Hold);
        assert_eq!(a.label(2.0), "on hold");
        a.control(ControlKind::Transfer);
        assert_eq!(a.label(2.0), "transferring");
        let mut a = Activity::new(Some(5.0));
        a.control(ControlKind::Hold);
        a.control(ControlKind::Unhold);
        a.voice(Channel::Customer, true, 1.0);
        a.voice(Channel::Customer, false, 2.0);
        assert_eq!(a.speaking, []);
        assert_eq!(a.label(3.0), "silent");
    }
}
