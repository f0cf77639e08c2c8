//! The session thread: the pipeline's events through the rules and out
//! through the [`Publisher`]; then the call's end, stored and published. It
//! blocks (on the pipeline's events, on store writes, on a full reply
//! queue), so it is a dedicated OS thread, not a task; it holds the call's
//! slot until the very end.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::activity::Activity;
use super::publish::Publisher;
use super::{Abort, Ending, Input, Outgoing, Slot};
use crate::calls::LiveCall;
use crate::context::Shared;
use crate::filter::Meta;
use crate::pb;
use crate::store::watched::Watched;
use crate::transcript_filter::CallFilter;
use callwatch_core::audio::Channel;
use callwatch_core::events::Event;
use callwatch_core::pipeline::Call;
use callwatch_core::rules::CallRules;
use callwatch_core::time::now_unix_ms;

use pb::call_update::Update;

pub(super) struct Session {
    pub shared: Arc<Shared>,
    pub call: Arc<LiveCall>,
    pub meta: Meta,
    pub pipeline: Call,
    pub engine: CallRules,
    pub activity: Activity,
    pub filter: Box<dyn CallFilter>,
    pub inputs: std::sync::mpsc::Receiver<Input>,
    pub replies: mpsc::Sender<Outgoing>,
    pub slot: Slot,
}

/// What the adapter has said so far.
struct Inputs {
    rx: std::sync::mpsc::Receiver<Input>,
    ending: Option<Ending>,
}

impl Inputs {
    /// Takes what has arrived without waiting; controls go to `apply`.
    fn take(&mut self, mut apply: impl FnMut(callwatch_core::rules::Control)) {
        for input in self.rx.try_iter() {
            match input {
                Input::Control(c) => apply(c),
                Input::End(ending) => self.ending = Some(ending),
            }
        }
    }

    /// Waits for the adapter to finish the call.
    fn ending(mut self) -> Ending {
        while self.ending.is_none() {
            match self.rx.recv() {
                Ok(Input::End(ending)) => self.ending = Some(ending),
                Ok(Input::Control(_)) => {}
                Err(_) => break,
            }
        }
        self.ending
            .unwrap_or_else(|| Ending::Dropped("the adapter went away without an end".into()))
    }
}

impl Session {
    pub fn run(self) {
        let Session {
            shared,
            call,
            meta,
            pipeline,
            engine,
            activity,
            filter,
            inputs,
            replies,
            slot,
        } = self;
        let mut inputs = Inputs {
            rx: inputs,
            ending: None,
        };
        let mut publisher = Publisher::new(
            &call,
            &*shared.store,
            &*shared.feed,
            &shared.desks,
            &meta,
            filter,
            &replies,
        );
        let followed = follow(
            pipeline,
            engine,
            activity,
            &mut inputs,
            &mut publisher,
            &shared.store_health,
        );
        if let Err(e) = &followed {
            if shared.store_health.failing() {
                // Nothing of the call can be kept: the far end is told now,
                // not when its stream ends; the end is recorded once the
                // store works again.
                let last = store_failed(&shared, &call, publisher.alerts(), e);
                shared.calls.remove(&meta.call_id);
                let _ = replies.blocking_send(last);
                // The slot returns once the adapter has let the call go.
                inputs.ending();
                drop(slot);
                return;
            }
        }
        // Every control is in by now: the audio (and with it the inlet) has ended.
        let mut ending = inputs.ending();
        let ended = followed.and_then(|Followed { audio_s, engine, fault }| {
            if let Some(why) = fault {
                tracing::error!(call = %meta.call_id, "the call's pipeline failed: {why}");
                ending = Ending::Aborted(Abort::Fault(why));
            }
            let (state, reason) = match &ending {
                Ending::Ended => (pb::CallState::Ended, String::new()),
                Ending::Dropped(why) => (pb::CallState::Dropped, why.clone()),
                Ending::Aborted(why) => (pb::CallState::Aborted, why.to_string()),
            };
            let mut info = call.info();
            info.state = state.into();
            info.reason = reason;
            info.ended_unix_ms = now_unix_ms();
            info.audio_s = audio_s;
            info.alerts = publisher.alerts();
            // Final however the call ended; a call not judged to its end
            // keeps its pending items pending.
            let mut card = engine.scorecard().clone();
            if !card.is_final {
                card.finish();
            }
            info.score = pb::Scorecard::from(&card).score;
            publisher.ended(info, &card)
        });
        shared.calls.remove(&meta.call_id);
        let last = match (ending, ended) {
            (Ending::Aborted(why), Ok(_)) => Outgoing::Aborted(why),
            (_, Ok(ended)) => Outgoing::Ended(ended),
            (_, Err(e)) if shared.store_health.failing() => store_failed(&shared, &call, publisher.alerts(), &e),
            (_, Err(e)) => {
                tracing::error!(call = %meta.call_id, "the call's session failed: {e:#}");
                Outgoing::Failed
            }
        };
        let _ = replies.blocking_send(last);
        // Fully ended: the slot is free again.
        drop(slot);
    }
}

/// A call the store could not keep: ended as ABORTED, its end recorded
/// once the store works again; the far end gets UNAVAILABLE.
fn store_failed(shared: &Shared, call: &LiveCall, alerts: u32, e: &anyhow::Error) -> Outgoing {
    let mut info = call.info();
    tracing::error!(call = %info.call_id, "the call store failed; the call is ended: {e:#}");
    info.state = pb::CallState::Aborted.into();
    info.reason = format!("the call store failed: {e:#}");
    info.ended_unix_ms = now_unix_ms();
    info.alerts = alerts;
    shared.store_health.end_when_healthy(info);
    Outgoing::Aborted(Abort::StoreFailed(format!("{e:#}")))
}

/// How far a call's audio got.
struct Followed {
    audio_s: f64,
    /// The rules' final state.
    engine: CallRules,
    /// Why the pipeline failed, if it did: the call is then kept as far as
    /// it got and ends as aborted.
    fault: Option<String>,
}

/// Runs the call to the end of its audio (or to its pipeline's failure).
fn follow(
    pipeline: Call,
    mut engine: CallRules,
    mut activity: Activity,
    inputs: &mut Inputs,
    publisher: &mut Publisher,
    store: &Watched,
) -> anyhow::Result<Followed> {
    publisher.started()?;
    let call = publisher.call;
    let mut heard_s = 0.0;
    for event in pipeline.events.iter() {
        inputs.take(|c| {
            activity.control(c.kind);
            publisher.control(&c);
            engine.control(c);
        });
        match &event {
            Event::Transcript(t) => publisher.transcript(t)?,
            Event::Voice {
                channel, speaking, t_s, ..
            } => {
                call.publish(Update::Voice(pb::VoiceActivity {
                    call_id: publisher.meta.call_id.clone(),
                    channel: pb::Channel::from(*channel).into(),
                    speaking: *speaking,
                    t_s: *t_s,
                }));
                if *channel != Channel::Customer {
                    publisher.agent_speaking(*speaking);
                }
                activity.voice(*channel, *speaking, *t_s);
            }
            Event::Tick { t_s, .. } => {
                // Nothing of the call can be kept: it ends now.
                if store.failing() {
                    anyhow::bail!("the store failed while the call was live");
                }
                heard_s = *t_s;
                let mut info = call.info.lock().expect("poisoned");
                info.audio_s = *t_s;
                info.activity = activity.label(*t_s).to_owned();
                info.speaking = activity.speaking.iter().map(|&c| pb::Channel::from(c) as i32).collect();
            }
        }
        // The rules read the words unfiltered.
        for output in engine.feed(&event) {
            publisher.output(output)?;
        }
        publisher.scorecard(engine.scorecard());
        if matches!(event, Event::Tick { .. }) {
            publisher.progress()?;
        }
    }
    // The event stream has closed, so the front end is done, one way or the other.
    let (audio_s, fault) = match pipeline.join() {
        Ok(report) => (report.audio_s, None),
        Err(e) => (heard_s, Some(format!("{e:#}"))),
    };
    inputs.take(|c| engine.control(c));
    // The end-of-call verdicts ("never said…", a dropped call's callback)
    // judge a call that ran its course. A call without audio had nothing
    // to judge, and an aborted one (bad input, a fault, shutdown) keeps
    // what was judged up to its abort.
    let aborted = fault.is_some() || matches!(inputs.ending, Some(Ending::Aborted(_)));
    if audio_s > 0.0 && !aborted {
        for output in engine.finish(audio_s) {
            publisher.output(output)?;
        }
    }
    publisher.agent_speaking(false);
    Ok(Followed { audio_s, engine, fault })
}
