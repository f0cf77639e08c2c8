//! The QA scorecard: the monitoring form, filled in by the rules as the call
//! goes on. One item per rule, grouped by the form's sections.

use std::sync::Arc;

use serde::Serialize;

use super::config::Rulebook;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    /// Not decided yet (the call is still on).
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "pass")]
    Pass,
    #[serde(rename = "fail")]
    Fail,
    /// The situation never arose (no hold, no ticket created…).
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl Status {
    const ALL: [Status; 4] = [Status::Pending, Status::Pass, Status::Fail, Status::NotApplicable];

    /// The name in JSON and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotApplicable => "n/a",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub rule_id: Arc<str>,
    pub item: String,
    pub status: Status,
    /// Whether the item counts toward the score.
    pub scored: bool,
    /// Call time of the evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub t_s: Option<f64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub evidence: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub name: String,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scorecard {
    #[serde(rename = "type")]
    kind: &'static str,
    pub call_id: Arc<str>,
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Percent of decided, applicable items that passed.
    pub score: Option<f64>,
    pub sections: Vec<Section>,
    /// Rule index → (section, item) position.
    #[serde(skip)]
    index: Vec<(usize, usize)>,
    /// Bumped by every change, so a publisher can tell cheaply whether
    /// there is anything new to send.
    #[serde(skip)]
    revision: u64,
}

impl Scorecard {
    pub fn new(call_id: &str, rules: &Rulebook) -> Self {
        let mut sections: Vec<Section> = Vec::new();
        let mut index = Vec::new();
        for rule in &rules.rules {
            let s = match sections.iter().position(|s| s.name == rule.section) {
                Some(s) => s,
                None => {
                    sections.push(Section {
                        name: rule.section.clone(),
                        items: Vec::new(),
                    });
                    sections.len() - 1
                }
            };
            sections[s].items.push(Item {
                rule_id: rule.id.clone(),
                item: rule.item.clone(),
                status: Status::Pending,
                scored: rule.scored,
                t_s: None,
                evidence: String::new(),
            });
            index.push((s, sections[s].items.len() - 1));
        }
        Self {
            kind: "scorecard",
            call_id: call_id.into(),
            is_final: false,
            score: None,
            sections,
            index,
            revision: 0,
        }
    }

    /// A scorecard as received from elsewhere (the gRPC service), for showing.
    pub fn from_parts(call_id: &str, is_final: bool, score: Option<f64>, sections: Vec<Section>) -> Self {
        Self {
            kind: "scorecard",
            call_id: call_id.into(),
            is_final,
            score,
            sections,
            index: Vec::new(),
            revision: 0,
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn status(&self, rule: usize) -> Status {
        let (s, i) = self.index[rule];
        self.sections[s].items[i].status
    }

    /// Records a decision; a failure stays a failure.
    pub fn set(&mut self, rule: usize, status: Status, t_s: f64, evidence: &str) {
        if self.status(rule) == Status::Fail && status != Status::Pending {
            return;
        }
        self.write(rule, status, t_s, evidence);
    }

    /// Records a decision even over a failure: for a rule whose earliest
    /// standing failure changed (a provisional one was retracted).
    pub fn replace(&mut self, rule: usize, status: Status, t_s: f64, evidence: &str) {
        self.write(rule, status, t_s, evidence);
    }

    fn write(&mut self, rule: usize, status: Status, t_s: f64, evidence: &str) {
        let (s, i) = self.index[rule];
        let item = &mut self.sections[s].items[i];
        // A time only where there is something to point at: the words, or the failure.
        let pinned = status == Status::Fail || (status == Status::Pass && !evidence.is_empty());
        let t_s = pinned.then_some((t_s * 10.0).round() / 10.0);
        if item.status == status && item.t_s == t_s && item.evidence == evidence {
            return;
        }
        item.status = status;
        item.t_s = t_s;
        item.evidence = evidence.to_owned();
        self.revision += 1;
        self.rescore();
    }

    pub fn finish(&mut self) {
        self.is_final = true;
        self.revision += 1;
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("scorecards serialise")
    }

    fn rescore(&mut self) {
        let items = self.sections.iter().flat_map(|s| &s.items).filter(|i| i.scored);
        let (pass, decided) = items.fold((0, 0), |(p, d), i| match i.status {
            Status::Pass => (p + 1, d + 1),
            Status::Fail => (p, d + 1),
            _ => (p, d),
        });
        self.score = (decided > 0).then(|| (1000.0 * pass as f64 / decided as f64).round() / 10.0);
    }
}

impl std::fmt::Display for Scorecard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "QA scorecard — call {}", self.call_id)?;
        for section in &self.sections {
            writeln!(f, "  {}", section.name)?;
            for item in &section.items {
                let mark = match item.status {
                    Status::Pass => "pass",
                    Status::Fail => "FAIL",
                    Status::NotApplicable => "n/a ",
                    Status::Pending => " …  ",
                };
                let when = item.t_s.map(|t| format!(" @{t:.1}s")).unwrap_or_default();
                let evidence = if item.evidence.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", item.evidence)
                };
                writeln!(f, "    [{mark}] {}{when}{evidence}", item.item)?;
            }
        }
        match self.score {
            Some(score) => write!(f, "  score: {score:.1} %"),
            None => write!(f, "  score: n/a"),
        }
    }
}
