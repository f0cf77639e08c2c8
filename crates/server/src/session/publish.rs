//! Everything a call session sends out, in one order: the store first, then
//! the supervisors' feed, then the call's watchers, then the agent (softphone
//! and panel). A dashboard that reconnects therefore finds in the store
//! whatever it missed live. Every word passes the [`TranscriptFilter`] here.

use std::collections::HashMap;

use tokio::sync::mpsc;

use super::nudge::NudgeGate;
use super::Outgoing;
use crate::calls::LiveCall;
use crate::desks::Desks;
use crate::feed::Feed;
use crate::filter::Meta;
use crate::pb;
use crate::store::CallStore;
use crate::transcript_filter::{self as filter, CallFilter};
use callwatch_core::alerts::{Audience, RuleOutput};
use callwatch_core::events::Transcript;
use callwatch_core::rules::{Control, Scorecard};
use callwatch_core::time::now_unix_ms;

use pb::agent_update::Update as Desk;
use pb::call_update::Update;

/// A raised alert, kept until the call ends or it is retracted.
struct Raised {
    severity: i32,
    rule_id: String,
    nudged: bool,
}

pub struct Publisher<'a> {
    pub call: &'a LiveCall,
    pub store: &'a dyn CallStore,
    pub feed: &'a dyn Feed,
    pub desks: &'a Desks,
    pub meta: &'a Meta,
    /// The call's own filter: it may keep state across utterances.
    pub filter: Box<dyn CallFilter>,
    /// Back to the adapter: nudges and retractions wait for room (never
    /// dropped); an adapter that stops reading stalls only its own call.
    pub replies: &'a mpsc::Sender<Outgoing>,
    raised: HashMap<u64, Raised>,
    /// The revision of the scorecard last published.
    scorecard_revision: Option<u64>,
    gate: NudgeGate,
    /// When the live call's progress was last stored.
    progress_at: Option<std::time::Instant>,
}

/// Wall time between stored progress records of a live call: how far a
/// call's end may lie before the end a restart gives it after a crash.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

pub fn feed_event(event: pb::alert_event::Event) -> pb::AlertEvent {
    pb::AlertEvent {
        at_unix_ms: now_unix_ms(),
        event: Some(event),
        ..Default::default()
    }
}

impl<'a> Publisher<'a> {
    pub fn new(
        call: &'a LiveCall,
        store: &'a dyn CallStore,
        feed: &'a dyn Feed,
        desks: &'a Desks,
        meta: &'a Meta,
        filter: Box<dyn CallFilter>,
        replies: &'a mpsc::Sender<Outgoing>,
    ) -> Self {
        Self {
            call,
            store,
            feed,
            desks,
            meta,
            filter,
            replies,
            raised: HashMap::new(),
            scorecard_revision: None,
            gate: NudgeGate::default(),
            progress_at: None,
        }
    }

    /// Alerts raised and not retracted.
    pub fn alerts(&self) -> u32 {
        self.raised.len() as u32
    }

    /// The call is live: into the feed.
    pub fn started(&self) -> anyhow::Result<()> {
        let started = pb::CallStarted {
            call: Some(self.call.info()),
        };
        self.feed.record(
            self.meta.clone(),
            feed_event(pb::alert_event::Event::CallStarted(started)),
        )?;
        Ok(())
    }

    /// A transcript revision: finals into the store, every revision to the
    /// call's watchers.
    pub fn transcript(&mut self, t: &Transcript) -> anyhow::Result<()> {
        let revision = filter::revision(&mut *self.filter, t.channel, pb::TranscriptRevision::from(t));
        if t.is_final {
            self.store.add_final(&revision)?;
        }
        self.call.publish(Update::Transcript(revision));
        Ok(())
    }

    pub fn control(&self, c: &Control) {
        self.call.publish(Update::Control(pb::ControlEvent {
            action: c.kind.name().to_owned(),
            t_s: c.t_s,
            transfer_to: c.to.clone().unwrap_or_default(),
        }));
    }

    pub fn output(&mut self, output: RuleOutput) -> anyhow::Result<()> {
        match output {
            RuleOutput::Alert(alert) => {
                let wire = filter::alert(&*self.filter, pb::Alert::from(&alert));
                let nudge = alert.audience.contains(&Audience::Agent);
                let meta = Meta {
                    severity: Some(wire.severity),
                    rule_id: Some(wire.rule_id.clone()),
                    ..self.meta.clone()
                };
                self.raised.insert(
                    alert.id,
                    Raised {
                        severity: wire.severity,
                        rule_id: wire.rule_id.clone(),
                        nudged: nudge,
                    },
                );
                self.feed
                    .record(meta, feed_event(pb::alert_event::Event::Alert(wire.clone())))?;
                self.call.info.lock().expect("poisoned").alerts = self.alerts();
                self.call.publish(Update::Alert(wire.clone()));
                if nudge {
                    if let Some(now) = self.gate.offer(wire) {
                        self.release(now);
                    }
                }
            }
            RuleOutput::Retract { id, call_id } => {
                let Some(raised) = self.raised.remove(&id) else {
                    return Ok(());
                };
                let retraction = pb::Retraction {
                    call_id: call_id.to_string(),
                    alert_id: id,
                };
                let meta = Meta {
                    severity: Some(raised.severity),
                    rule_id: Some(raised.rule_id),
                    ..self.meta.clone()
                };
                self.feed
                    .record(meta, feed_event(pb::alert_event::Event::Retraction(retraction.clone())))?;
                self.call.info.lock().expect("poisoned").alerts = self.alerts();
                self.call.publish(Update::Retraction(retraction.clone()));
                if raised.nudged && !self.gate.withdraw(id) {
                    let _ = self.replies.blocking_send(Outgoing::Retraction(retraction.clone()));
                    self.desks.publish(&self.meta.agent_id, Desk::Retraction(retraction));
                }
            }
        }
        Ok(())
    }

    /// The agent's screens (softphone and panel) get a nudge.
    fn release(&self, nudge: pb::Alert) {
        self.desks.publish(&self.meta.agent_id, Desk::Nudge(nudge.clone()));
        let _ = self.replies.blocking_send(Outgoing::Nudge(nudge));
    }

    /// The agent started or stopped speaking (see [`NudgeGate`]).
    pub fn agent_speaking(&mut self, speaking: bool) {
        for nudge in self.gate.agent_speaking(speaking) {
            self.release(nudge);
        }
    }

    /// Publishes the scorecard to the call's watchers when it changed.
    pub fn scorecard(&mut self, card: &Scorecard) {
        if Some(card.revision()) == self.scorecard_revision {
            return;
        }
        self.scorecard_revision = Some(card.revision());
        let card = filter::scorecard(&*self.filter, pb::Scorecard::from(card));
        *self.call.scorecard.lock().expect("poisoned") = card.clone();
        self.call.publish(Update::Scorecard(card));
    }

    /// Stores how far the live call has got (audio, alerts, scorecard, the
    /// time as its provisional end), at most every `PROGRESS_EVERY`: a
    /// server killed mid-call then closes it on restart as it was (see
    /// `Sqlite::open`), not as an empty call.
    pub fn progress(&mut self) -> anyhow::Result<()> {
        if self.progress_at.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) {
            return Ok(());
        }
        self.progress_at = Some(std::time::Instant::now());
        let mut info = self.call.info();
        info.ended_unix_ms = now_unix_ms();
        let card = self.call.scorecard.lock().expect("poisoned").clone();
        info.score = card.score;
        self.store.end_call(&info, Some(&card))
    }

    /// The call is over: `info` (its final state) and its scorecard into
    /// the store, the feed, the watchers and the agent's panel.
    pub fn ended(&self, info: pb::CallInfo, card: &Scorecard) -> anyhow::Result<pb::CallEnded> {
        let card = filter::scorecard(&*self.filter, pb::Scorecard::from(card));
        self.store.end_call(&info, Some(&card))?;
        let ended = pb::CallEnded {
            call: Some(info.clone()),
            scorecard: Some(card.clone()),
        };
        self.feed.record(
            self.meta.clone(),
            feed_event(pb::alert_event::Event::CallEnded(ended.clone())),
        )?;
        *self.call.scorecard.lock().expect("poisoned") = card.clone();
        self.call.publish(Update::Scorecard(card));
        self.call.publish(Update::Call(info.clone()));
        self.desks.publish(&self.meta.agent_id, Desk::Call(info));
        Ok(ended)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::calls::Calls;
    use crate::cursor::Cursor;
    use crate::feed::hub::Hub;
    use crate::store::sqlite::Sqlite;
    use callwatch_core::alerts::{Party, Severity};
    use callwatch_core::audio::Channel;
    use callwatch_core::redact::Redacted;

    /// Masks every letter and digit: nothing readable may get past it.
    struct Mask;

    impl CallFilter for Mask {
        fn revision(&mut self, _: Channel, _: bool, text: &str) -> Redacted {
            Redacted {
                text: self.evidence(text),
                spans: Vec::new(),
            }
        }

        fn evidence(&self, text: &str) -> String {
            text.chars()
                .map(|c| if c.is_alphanumeric() { '*' } else { c })
                .collect()
        }
    }

    fn alert(id: u64, severity: Severity) -> RuleOutput {
        RuleOutput::Alert(callwatch_core::alerts::Alert {
            kind: "alert",
            id,
            call_id: "c1".into(),
            rule_id: "language.jargon".into(),
            severity,
            audience: vec![Audience::Agent, Audience::Supervisor],
            party: Party::Agent,
            start_s: 1.0,
            end_s: 2.0,
            emitted_s: 2.4,
            evidence: "reset the ONT 4419".into(),
            message: "Plain words, please.".into(),
            script: None,
        })
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<dyn CallStore>,
        feed: Hub,
        calls: Calls,
        desks: Desks,
        meta: Meta,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn CallStore> = Arc::new(Sqlite::open(dir.path()).unwrap());
        let info = pb::CallInfo {
            call_id: "c1".into(),
            agent_id: "a1".into(),
            team: "t".into(),
            ..Default::default()
        };
        assert!(store.begin_call(&info).unwrap());
        let calls = Calls::default();
        calls.insert(info, pb::Scorecard::default()).unwrap();
        Fixture {
            _dir: dir,
            feed: Hub::new(store.clone(), 16),
            store,
            calls,
            desks: Desks::default(),
            meta: Meta {
                call_id: "c1".into(),
                team: "t".into(),
                agent_id: "a1".into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn store_feed_watchers_then_agent_all_filtered() {
        let f = fixture();
        let call = f.calls.get("c1").unwrap();
        let mut watcher = call.updates.subscribe();
        let (replies, mut agent) = mpsc::channel(8);
        let mut p = Publisher::new(&call, &*f.store, &f.feed, &f.desks, &f.meta, Box::new(Mask), &replies);
        p.transcript(&Transcript {
            call_id: "c1".into(),
            channel: callwatch_core::audio::Channel::Agent,
            utterance_id: 1,
            revision: 0,
            is_final: true,
            start_s: 0.5,
            end_s: 2.0,
            text: "Reset the ONT, 4419.".into(),
            tokens: Vec::new(),
            ready_after_s: 2.1,
        })
        .unwrap();
        p.output(alert(1, Severity::Warning)).unwrap();

        // The store has the final and the alert, both masked.
        let record = f.store.record("c1").unwrap().unwrap();
        assert_eq!(record.transcript[0].text, "***** *** ***, ****.");
        assert_eq!(record.alerts[0].evidence, "***** *** *** ****");
        assert_eq!(record.alerts[0].message, "Plain words, please.");
        // The watcher got them in the same order, masked.
        let Some(Update::Transcript(t)) = watcher.try_recv().unwrap().update else {
            panic!()
        };
        assert_eq!(t.text, "***** *** ***, ****.");
        let Some(Update::Alert(a)) = watcher.try_recv().unwrap().update else {
            panic!()
        };
        assert_eq!(a.evidence, "***** *** *** ****");
        // The agent was quiet: the nudge went out at once, masked.
        let Ok(Outgoing::Nudge(n)) = agent.try_recv() else {
            panic!()
        };
        assert_eq!((n.id, n.evidence.as_str()), (1, "***** *** *** ****"));
        assert_eq!(call.info().alerts, 1);
    }

    #[test]
    fn a_nudge_held_mid_sentence_and_retracted_never_reaches_the_agent() {
        let f = fixture();
        let call = f.calls.get("c1").unwrap();
        let (replies, mut agent) = mpsc::channel(8);
        let mut p = Publisher::new(&call, &*f.store, &f.feed, &f.desks, &f.meta, Box::new(Mask), &replies);
        p.agent_speaking(true);
        p.output(alert(1, Severity::Warning)).unwrap();
        p.output(alert(2, Severity::Warning)).unwrap();
        assert!(agent.try_recv().is_err(), "held while the agent speaks");
        p.output(RuleOutput::Retract {
            id: 1,
            call_id: "c1".into(),
        })
        .unwrap();
        assert!(agent.try_recv().is_err(), "a held nudge is withdrawn silently");
        p.agent_speaking(false);
        let Ok(Outgoing::Nudge(n)) = agent.try_recv() else {
            panic!()
        };
        assert_eq!(n.id, 2);
        // A shown nudge is taken back.
        p.output(RuleOutput::Retract {
            id: 2,
            call_id: "c1".into(),
        })
        .unwrap();
        let Ok(Outgoing::Retraction(r)) = agent.try_recv() else {
            panic!()
        };
        assert_eq!(r.alert_id, 2);
        assert_eq!(p.alerts(), 0);
        // The feed has both alerts and both retractions.
        let kinds: Vec<_> = f
            .store
            .feed_after(Cursor(0), 10)
            .unwrap()
            .into_iter()
            .map(|e| match e.event.event.unwrap() {
                pb::alert_event::Event::Alert(a) => format!("alert {}", a.id),
                pb::alert_event::Event::Retraction(r) => format!("retract {}", r.alert_id),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, ["alert 1", "alert 2", "retract 1", "retract 2"]);
    }
}
