//! Generated calls for benchmarks and tests of search and trends: varied
//! agents, teams, scores, durations, outcomes, alerts and transcripts, the
//! same for the same seed. Written through [`CallStore`] like real calls.

use anyhow::Result;

use super::CallStore;
use crate::filter::Meta;
use crate::pb;

pub const TEAMS: [&str; 3] = ["billing", "sales", "support"];
/// Agents `a0`…`a8`; agent `aN` is in team `TEAMS[N % 3]`.
pub const AGENTS: usize = 9;
pub const RULES: [&str; 4] = ["hold.permission", "dead_air", "talk_over", "disclosure.recording"];
const AGENT_LINES: [&str; 6] = [
    "thank you for calling how can I help",
    "may I put you on a brief hold",
    "this call is recorded for quality",
    "let me check your account details",
    "I can offer you a refund today",
    "is there anything else I can help with",
];
const CUSTOMER_LINES: [&str; 6] = [
    "my invoice looks wrong this month",
    "I want to cancel my subscription",
    "the router keeps dropping the connection",
    "can you explain this late fee",
    "I would like to upgrade my plan",
    "my card number is [CARD]",
];
/// Start of the first generated call (2026-01-01T00:00:00Z); one call
/// starts every 10 minutes after it.
pub const FIRST_START_MS: i64 = 1_767_225_600_000;
pub const SPACING_MS: i64 = 600_000;

/// One generated call: what was said, the alerts raised, how it ended.
#[derive(Debug, Clone)]
pub struct SeedCall {
    pub info: pb::CallInfo,
    pub finals: Vec<pb::TranscriptRevision>,
    /// Rule ids of the alerts raised (in order).
    pub rules: Vec<&'static str>,
    pub scorecard: pb::Scorecard,
}

/// xorshift64*: enough variety, no dependency, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// `n` calls, `c0`…, from `seed`.
pub fn generate(n: usize, seed: u64) -> Vec<SeedCall> {
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|i| {
            let call_id = format!("c{i}");
            let agent = rng.next(AGENTS);
            let started = FIRST_START_MS + i as i64 * SPACING_MS;
            let handle_s = 30 + rng.next(570) as i64;
            let state = match rng.next(10) {
                0 => pb::CallState::Dropped,
                1 => pb::CallState::Aborted,
                _ => pb::CallState::Ended,
            };
            let mut finals = Vec::new();
            for (channel, lines) in [
                (pb::Channel::Agent, &AGENT_LINES),
                (pb::Channel::Customer, &CUSTOMER_LINES),
            ] {
                for u in 0..1 + rng.next(3) {
                    finals.push(pb::TranscriptRevision {
                        call_id: call_id.clone(),
                        channel: channel as i32,
                        utterance_id: u as u64,
                        is_final: true,
                        start_s: (u * 10) as f64,
                        end_s: (u * 10 + 4) as f64,
                        text: lines[rng.next(lines.len())].to_owned(),
                        ..Default::default()
                    });
                }
            }
            let rules: Vec<&'static str> = (0..rng.next(3)).map(|_| RULES[rng.next(RULES.len())]).collect();
            let items: Vec<pb::ScorecardItem> = RULES
                .iter()
                .map(|rule| pb::ScorecardItem {
                    rule_id: (*rule).to_owned(),
                    item: format!("item {rule}"),
                    status: if rules.contains(rule) { "fail" } else { "pass" }.to_owned(),
                    scored: true,
                    ..Default::default()
                })
                .collect();
            let passed = items.iter().filter(|i| i.status == "pass").count();
            let score = (rng.next(10) != 0).then(|| 100.0 * passed as f64 / items.len() as f64);
            let info = pb::CallInfo {
                call_id: call_id.clone(),
                agent_id: format!("a{agent}"),
                team: TEAMS[agent % TEAMS.len()].to_owned(),
                state: state as i32,
                started_unix_ms: started,
                ended_unix_ms: started + handle_s * 1000,
                audio_s: handle_s as f64,
                alerts: rules.len() as u32,
                score,
                ..Default::default()
            };
            let scorecard = pb::Scorecard {
                call_id,
                is_final: true,
                score,
                sections: vec![pb::ScorecardSection {
                    name: "compliance".into(),
                    items,
                }],
            };
            SeedCall {
                info,
                finals,
                rules,
                scorecard,
            }
        })
        .collect()
}

/// Stores the calls as the service would: begun, finals, alerts, ended.
pub fn write(store: &dyn CallStore, calls: &[SeedCall]) -> Result<()> {
    for call in calls {
        let live = pb::CallInfo {
            state: pb::CallState::Live as i32,
            ended_unix_ms: 0,
            score: None,
            ..call.info.clone()
        };
        store.begin_call(&live)?;
        for f in &call.finals {
            store.add_final(f)?;
        }
        for (id, rule) in call.rules.iter().enumerate() {
            let meta = Meta {
                call_id: call.info.call_id.clone(),
                team: call.info.team.clone(),
                agent_id: call.info.agent_id.clone(),
                severity: Some(pb::Severity::Warning as i32),
                rule_id: Some((*rule).to_owned()),
            };
            let alert = pb::Alert {
                id: id as u64 + 1,
                call_id: call.info.call_id.clone(),
                rule_id: (*rule).to_owned(),
                severity: pb::Severity::Warning as i32,
                ..Default::default()
            };
            let event = pb::AlertEvent {
                call_id: meta.call_id.clone(),
                agent_id: meta.agent_id.clone(),
                team: meta.team.clone(),
                at_unix_ms: call.info.started_unix_ms,
                event: Some(pb::alert_event::Event::Alert(alert)),
                ..Default::default()
            };
            store.append(&meta, &event)?;
        }
        store.end_call(&call.info, Some(&call.scorecard))?;
    }
    Ok(())
}
