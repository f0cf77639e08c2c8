//! When a nudge reaches the agent's screens: not while the agent is
//! mid-sentence (a pop-up then interrupts what they are saying), unless it
//! is critical. Held nudges go out, in order, when the agent stops; a held
//! nudge whose alert is retracted was never shown and just goes.

use crate::pb;

#[derive(Debug, Default)]
pub struct NudgeGate {
    speaking: bool,
    held: Vec<pb::Alert>,
}

impl NudgeGate {
    /// A nudge raised: returned if it may be shown now, else held.
    pub fn offer(&mut self, nudge: pb::Alert) -> Option<pb::Alert> {
        if self.speaking && nudge.severity != pb::Severity::Critical as i32 {
            self.held.push(nudge);
            return None;
        }
        Some(nudge)
    }

    /// The agent started or stopped speaking; returns the nudges released,
    /// oldest first.
    pub fn agent_speaking(&mut self, speaking: bool) -> Vec<pb::Alert> {
        self.speaking = speaking;
        if speaking {
            return Vec::new();
        }
        std::mem::take(&mut self.held)
    }

    /// Alert `id` was retracted: true if its nudge was held (never shown, so
    /// there is nothing to take back on the agent's screens).
    pub fn withdraw(&mut self, id: u64) -> bool {
        let before = self.held.len();
        self.held.retain(|a| a.id != id);
        self.held.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nudge(id: u64, severity: pb::Severity) -> pb::Alert {
        pb::Alert {
            id,
            severity: severity.into(),
            ..Default::default()
        }
    }

    fn ids(nudges: &[pb::Alert]) -> Vec<u64> {
        nudges.iter().map(|a| a.id).collect()
    }

    #[test]
    fn nudges_pass_while_the_agent_is_quiet() {
        let mut gate = NudgeGate::default();
        assert_eq!(gate.offer(nudge(1, pb::Severity::Info)).map(|a| a.id), Some(1));
        assert!(gate.agent_speaking(false).is_empty());
    }

    #[test]
    fn mid_sentence_nudges_wait_for_the_agent_to_stop_in_order() {
        let mut gate = NudgeGate::default();
        assert!(gate.agent_speaking(true).is_empty());
        assert!(gate.offer(nudge(1, pb::Severity::Warning)).is_none());
        assert!(gate.offer(nudge(2, pb::Severity::Info)).is_none());
        // Still speaking (a second start): nothing yet.
        assert!(gate.agent_speaking(true).is_empty());
        assert_eq!(ids(&gate.agent_speaking(false)), [1, 2]);
        assert!(gate.agent_speaking(false).is_empty(), "released once");
    }

    #[test]
    fn critical_nudges_interrupt() {
        let mut gate = NudgeGate::default();
        gate.agent_speaking(true);
        assert_eq!(gate.offer(nudge(3, pb::Severity::Critical)).map(|a| a.id), Some(3));
        assert!(gate.agent_speaking(false).is_empty());
    }

    #[test]
    fn a_retracted_held_nudge_is_never_shown() {
        let mut gate = NudgeGate::default();
        assert!(!gate.withdraw(9), "not held: it was shown and must be taken back");
        gate.agent_speaking(true);
        gate.offer(nudge(1, pb::Severity::Warning));
        gate.offer(nudge(2, pb::Severity::Warning));
        assert!(gate.withdraw(1));
        assert!(!gate.withdraw(1));
        assert_eq!(ids(&gate.agent_speaking(false)), [2]);
    }
}
