//! Alerts: what the rules tell agents and supervisors, and how it is printed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// Who is told: the agent (a nudge on their screen) and/or supervisors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    Agent,
    Supervisor,
}

/// Whose behaviour an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Party {
    Agent,
    Customer,
    Both,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unique within the call, increasing.
    pub id: u64,
    pub call_id: Arc<str>,
    pub rule_id: Arc<str>,
    pub severity: Severity,
    pub audience: Vec<Audience>,
    pub party: Party,
    /// Call time the alert is about.
    pub start_s: f64,
    pub end_s: f64,
    /// Call time when the rules raised it (the audio heard by then):
    /// `emitted_s - end_s` is how long after the words the alert came.
    pub emitted_s: f64,
    /// The words heard, or the acoustic measurement.
    pub evidence: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

/// What the rule engine emits.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleOutput {
    Alert(Alert),
    /// An alert raised on a partial transcript that a later revision contradicted.
    Retract {
        id: u64,
        call_id: Arc<str>,
    },
}

impl RuleOutput {
    pub fn to_json(&self) -> String {
        match self {
            Self::Alert(a) => serde_json::to_string(a).expect("alerts serialise"),
            Self::Retract { id, call_id } => {
                serde_json::json!({"type": "retract", "id": id, "call_id": call_id}).to_string()
            }
        }
    }
}

impl Alert {
    /// How long after the end of what it is about the alert was raised.
    pub fn lag_s(&self) -> f64 {
        (self.emitted_s - self.end_s).max(0.0)
    }
}

impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Info => "info",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        };
        write!(
            f,
            "[{} alert {sev}, lag {:.1} s] {}: {} ({})",
            crate::time::CallClock(self.start_s),
            self.lag_s(),
            self.rule_id,
            self.message,
            self.evidence
        )
    }
}
