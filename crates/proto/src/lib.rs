//! callwatch-proto: the wire contract. Messages and services generated from
//! `proto/callwatch/v1/*.proto` (by `build.rs`, with protox: no `protoc`
//! needed), the descriptor set for server reflection, and the conversions
//! between the wire types and callwatch-core's own, which know nothing of
//! the wire.

use std::sync::Arc;

use callwatch_core::alerts::{self, Audience, Severity};
use callwatch_core::audio::Channel;
use callwatch_core::rules::scorecard;

/// Messages and services generated from `proto/callwatch/v1`.
pub mod pb {
    tonic::include_proto!("callwatch.v1");

    /// For server reflection: every file of the API, encoded.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("callwatch_descriptor");
}

impl From<Channel> for pb::Channel {
    fn from(c: Channel) -> Self {
        match c {
            Channel::Agent => Self::Agent,
            Channel::Customer => Self::Customer,
            Channel::Mono => Self::Mixed,
        }
    }
}

impl From<Severity> for pb::Severity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Info => Self::Info,
            Severity::Warning => Self::Warning,
            Severity::Critical => Self::Critical,
        }
    }
}

impl From<&alerts::Alert> for pb::Alert {
    fn from(a: &alerts::Alert) -> Self {
        Self {
            id: a.id,
            call_id: a.call_id.to_string(),
            rule_id: a.rule_id.to_string(),
            severity: pb::Severity::from(a.severity).into(),
            for_agent: a.audience.contains(&Audience::Agent),
            for_supervisor: a.audience.contains(&Audience::Supervisor),
            party: match a.party {
                alerts::Party::Agent => pb::Party::Agent,
                alerts::Party::Customer => pb::Party::Customer,
                alerts::Party::Both => pb::Party::Both,
            }
            .into(),
            start_s: a.start_s,
            end_s: a.end_s,
            emitted_s: a.emitted_s,
            evidence: a.evidence.clone(),
            message: a.message.clone(),
            script: a.script.clone().unwrap_or_default(),
        }
    }
}

/// Back from the wire, for clients that print what `monitor` prints.
impl From<&pb::Alert> for alerts::Alert {
    fn from(a: &pb::Alert) -> Self {
        let audience = [(a.for_agent, Audience::Agent), (a.for_supervisor, Audience::Supervisor)]
            .into_iter()
            .filter_map(|(on, who)| on.then_some(who))
            .collect();
        Self {
            kind: "alert",
            id: a.id,
            call_id: a.call_id.as_str().into(),
            rule_id: a.rule_id.as_str().into(),
            severity: match a.severity() {
                pb::Severity::Critical => Severity::Critical,
                pb::Severity::Warning => Severity::Warning,
                pb::Severity::Info | pb::Severity::Unspecified => Severity::Info,
            },
            audience,
            party: match a.party() {
                pb::Party::Agent => alerts::Party::Agent,
                pb::Party::Customer => alerts::Party::Customer,
                pb::Party::Both | pb::Party::Unspecified => alerts::Party::Both,
            },
            start_s: a.start_s,
            end_s: a.end_s,
            emitted_s: a.emitted_s,
            evidence: a.evidence.clone(),
            message: a.message.clone(),
            script: (!a.script.is_empty()).then(|| a.script.clone()),
        }
    }
}

impl From<&callwatch_core::events::Transcript> for pb::TranscriptRevision {
    fn from(t: &callwatch_core::events::Transcript) -> Self {
        Self {
            call_id: t.call_id.to_string(),
            channel: pb::Channel::from(t.channel).into(),
            utterance_id: t.utterance_id,
            revision: t.revision,
            is_final: t.is_final,
            start_s: t.start_s,
            end_s: t.end_s,
            text: t.text.clone(),
            redacted: Vec::new(),
        }
    }
}

impl From<&scorecard::Scorecard> for pb::Scorecard {
    fn from(card: &scorecard::Scorecard) -> Self {
        Self {
            call_id: card.call_id.to_string(),
            is_final: card.is_final,
            score: card.score,
            sections: card
                .sections
                .iter()
                .map(|s| pb::ScorecardSection {
                    name: s.name.clone(),
                    items: s
                        .items
                        .iter()
                        .map(|i| pb::ScorecardItem {
                            rule_id: i.rule_id.to_string(),
                            item: i.item.clone(),
                            status: i.status.name().to_owned(),
                            scored: i.scored,
                            t_s: i.t_s,
                            evidence: i.evidence.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

impl From<&pb::Scorecard> for scorecard::Scorecard {
    fn from(card: &pb::Scorecard) -> Self {
        let sections = card
            .sections
            .iter()
            .map(|s| scorecard::Section {
                name: s.name.clone(),
                items: s
                    .items
                    .iter()
                    .map(|i| scorecard::Item {
                        rule_id: Arc::from(i.rule_id.as_str()),
                        item: i.item.clone(),
                        status: scorecard::Status::from_name(&i.status).unwrap_or(scorecard::Status::Pending),
                        scored: i.scored,
                        t_s: i.t_s,
                        evidence: i.evidence.clone(),
                    })
                    .collect(),
            })
            .collect();
        scorecard::Scorecard::from_parts(&card.call_id, card.is_final, card.score, sections)
    }
}
