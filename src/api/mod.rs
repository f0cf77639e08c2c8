//! The gRPC service: softphones stream calls in ([`ingest`]), supervisors'
//! dashboards watch alerts and calls ([`supervisor`]), operators reload the
//! rules ([`admin`]), agents' panels get their nudges ([`agent`]), and
//! browsers load the dashboard ([`web`]) and speak gRPC-web. Everything a supervisor sees is written to the
//! [`store`] before the [`hub`] publishes it, so a reconnecting dashboard
//! replays what it missed from the store.
//!
//! The wire types are generated from `proto/callwatch/v1/*.proto`; this
//! module translates between them and the pipeline's own types, which know
//! nothing of the wire.

pub mod admin;
pub mod agent;
pub mod auth;
pub mod calls;
pub mod client;
pub mod config;
pub mod hub;
pub mod ingest;
pub mod server;
pub mod store;
pub mod supervisor;
pub mod web;

use std::sync::Arc;

use crate::alerts::{self, Audience, Severity};
use crate::audio::Channel;
use crate::rules::scorecard;

/// Messages and services generated from `proto/callwatch/v1`.
pub mod pb {
    tonic::include_proto!("callwatch.v1");

    /// For server reflection: every file of the API, encoded.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("callwatch_descriptor");
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
            evidence: a.evidence.clone(),
            message: a.message.clone(),
            script: (!a.script.is_empty()).then(|| a.script.clone()),
        }
    }
}

impl From<&crate::events::Transcript> for pb::TranscriptRevision {
    fn from(t: &crate::events::Transcript) -> Self {
        Self {
            call_id: t.call_id.to_string(),
            channel: pb::Channel::from(t.channel).into(),
            utterance_id: t.utterance_id,
            revision: t.revision,
            is_final: t.is_final,
            start_s: t.start_s,
            end_s: t.end_s,
            text: t.text.clone(),
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
