//! What a feed subscriber selects events by: the [`Meta`] stored beside
//! each event, matched against a subscriber's [`Filter`].

/// What the feed is filtered on, stored beside each event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub call_id: String,
    pub team: String,
    pub agent_id: String,
    /// For alert events (and retractions and acknowledgements of them).
    pub severity: Option<i32>,
    pub rule_id: Option<String>,
}

/// Which feed events a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// `None`: every team.
    pub team: Option<String>,
    pub agent_id: Option<String>,
    /// Alerts below this severity (and their retractions and claims) are left out.
    pub min_severity: i32,
    /// Only this rule's alerts; call start and end events are then left out too.
    pub rule_id: Option<String>,
}

impl Filter {
    pub fn matches(&self, m: &Meta) -> bool {
        self.team.as_ref().is_none_or(|t| *t == m.team)
            && self.agent_id.as_ref().is_none_or(|a| *a == m.agent_id)
            && m.severity.is_none_or(|s| s >= self.min_severity)
            && self.rule_id.as_ref().is_none_or(|r| m.rule_id.as_ref() == Some(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    #[test]
    fn filters_select_team_agent_severity_and_rule() {
        let alert = Meta {
            call_id: "c1".into(),
            team: "billing".into(),
            agent_id: "a1".into(),
            severity: Some(pb::Severity::Warning as i32),
            rule_id: Some("hold.permission".into()),
        };
        let call_start = Meta {
            severity: None,
            rule_id: None,
            ..alert.clone()
        };
        assert!(Filter::default().matches(&alert));
        let team = |t: &str| Filter {
            team: Some(t.into()),
            ..Filter::default()
        };
        assert!(team("billing").matches(&alert) && !team("sales").matches(&alert));
        let agent = |a: &str| Filter {
            agent_id: Some(a.into()),
            ..Filter::default()
        };
        assert!(agent("a1").matches(&alert) && !agent("a2").matches(&alert));
        let critical = Filter {
            min_severity: pb::Severity::Critical as i32,
            ..Filter::default()
        };
        assert!(!critical.matches(&alert) && critical.matches(&call_start));
        let rule = Filter {
            rule_id: Some("hold.permission".into()),
            ..Filter::default()
        };
        assert!(rule.matches(&alert) && !rule.matches(&call_start));
    }
}
