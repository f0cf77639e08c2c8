//! The pool's queue: one queue per call, served fairly.
//!
//! Each call with jobs waiting has its own finals and partials. A worker
//! takes a final if any call has one, else a partial; among the calls that
//! have one it serves the call served least recently (a call never served
//! first, ties to the earlier arrival). A call's entry, and with it when it
//! was last served, lasts while the call does, so a call whose queue empties
//! between its jobs keeps its turn and gains none.
//! So a call's final waits for the decodes already running and at most one
//! decode of each other call with work queued, never for another call's
//! backlog.
//!
//! Bounds: `max_finals` queued per call (the submitter waits for its own
//! call's room, never another's); `max_partials` in all, past which the
//! oldest partial of the call holding the most is shed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};

use callwatch_core::events::CallSink;

use callwatch_core::pipeline::Job;

/// A call's identity in the queue: the address of its event sink. The
/// entry holds a `Weak` to it, which keeps the allocation (not the sink), so
/// the address is not reused while it is a key.
type CallKey = usize;

fn key(job: &Job) -> CallKey {
    Arc::as_ptr(&job.sink) as *const () as usize
}

struct CallJobs {
    /// Whether the call is still going (any job or its front end holds it).
    sink: Weak<CallSink>,
    finals: VecDeque<Job>,
    /// With their arrival number, to shed the oldest.
    partials: VecDeque<(u64, Job)>,
    /// When the pool last took a job of this call (0: never).
    last_served: u64,
    /// Arrival number of the job that created this entry.
    since: u64,
}

#[derive(Default)]
pub(super) struct FairQueue {
    calls: HashMap<CallKey, CallJobs>,
    finals: usize,
    partials: usize,
    /// Jobs taken so far: the clock of `last_served`.
    served: u64,
    arrivals: u64,
    /// Partials being decoded now.
    pub partials_running: usize,
    pub closed: bool,
}

impl FairQueue {
    /// Jobs queued across all calls.
    pub fn len(&self) -> usize {
        self.finals + self.partials
    }

    /// Finals queued for the call of `job`.
    pub fn finals_of(&self, job: &Job) -> usize {
        self.calls.get(&key(job)).map_or(0, |c| c.finals.len())
    }

    fn entry(&mut self, job: &Job) -> &mut CallJobs {
        self.arrivals += 1;
        let since = self.arrivals;
        if !self.calls.contains_key(&key(job)) {
            // Calls that have ended leave with their last job.
            self.calls
                .retain(|_, c| !c.finals.is_empty() || !c.partials.is_empty() || c.sink.strong_count() > 0);
        }
        self.calls.entry(key(job)).or_insert_with(|| CallJobs {
            sink: Arc::downgrade(&job.sink),
            finals: VecDeque::new(),
            partials: VecDeque::new(),
            last_served: 0,
            since,
        })
    }

    /// Queues a final, removing its utterance's queued partials (stale
    /// now); returns how many were removed. The caller has waited for room
    /// (`finals_of` below `max_finals`).
    pub fn push_final(&mut self, job: Job) -> u64 {
        let call = self.entry(&job);
        let before = call.partials.len();
        call.partials.retain(|(_, p)| !p.same_utterance(&job));
        let shed = before - call.partials.len();
        call.finals.push_back(job);
        self.partials -= shed;
        self.finals += 1;
        shed as u64
    }

    /// Queues a partial: it replaces a queued partial of its utterance, and
    /// past `max_partials` the oldest partial of the call holding the most
    /// is shed. Returns how many were shed.
    pub fn push_partial(&mut self, job: Job, max_partials: usize) -> u64 {
        let mut shed = 0;
        let seq = self.arrivals + 1;
        let call = self.entry(&job);
        if let Some(i) = call.partials.iter().position(|(_, p)| p.same_utterance(&job)) {
            call.partials.remove(i);
            self.partials -= 1;
            shed += 1;
        }
        if self.partials >= max_partials.max(1) {
            let fullest = self
                .calls
                .values_mut()
                .filter(|c| !c.partials.is_empty())
                .max_by_key(|c| (c.partials.len(), std::cmp::Reverse(c.partials[0].0)));
            if let Some(c) = fullest {
                c.partials.pop_front();
                self.partials -= 1;
                shed += 1;
            }
        }
        let call = self.calls.get_mut(&key(&job)).expect("entry made above");
        call.partials.push_back((seq, job));
        self.partials += 1;
        shed
    }

    /// The next job: a final if any call has one, else (when `partials_allowed`)
    /// a partial; each from the call served least recently.
    pub fn pop(&mut self, partials_allowed: bool) -> Option<Job> {
        let finals = self.finals > 0;
        if !(finals || partials_allowed && self.partials > 0) {
            return None;
        }
        let (&k, _) = self
            .calls
            .iter()
            .filter(|(_, c)| {
                if finals {
                    !c.finals.is_empty()
                } else {
                    !c.partials.is_empty()
                }
            })
            .min_by_key(|(_, c)| (c.last_served, c.since))?;
        self.served += 1;
        let call = self.calls.get_mut(&k).expect("key found above");
        call.last_served = self.served;
        if finals {
            self.finals -= 1;
            call.finals.pop_front()
        } else {
            self.partials -= 1;
            call.partials.pop_front().map(|(_, j)| j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callwatch_core::audio::Channel;
    use callwatch_core::events::CallSink;
    use std::time::Instant;

    fn job(sink: &Arc<CallSink>, utterance_id: u64, is_final: bool) -> Job {
        Job {
            sink: sink.clone(),
            channel: Channel::Agent,
            utterance_id,
            revision: 0,
            is_final,
            start_s: 0.0,
            end_s: 1.0,
            samples: Vec::new(),
        }
    }

    fn who(job: &Job) -> (String, u64) {
        (job.sink.call_id.to_string(), job.utterance_id)
    }

    #[test]
    fn calls_take_turns_and_finals_come_first() {
        let (a, _ra) = CallSink::new("a", Instant::now());
        let (b, _rb) = CallSink::new("b", Instant::now());
        let mut q = FairQueue::default();
        for id in 0..3 {
            q.push_final(job(&a, id, true));
        }
        q.push_partial(job(&b, 9, false), 8);
        q.push_final(job(&b, 0, true));
        q.push_final(job(&b, 1, true));
        let order: Vec<_> = std::iter::from_fn(|| q.pop(true)).map(|j| who(&j)).collect();
        let want = [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 9)];
        assert_eq!(order, want.map(|(c, i)| (c.to_owned(), i)));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_call_arriving_behind_a_backlog_is_served_next() {
        let (a, _ra) = CallSink::new("a", Instant::now());
        let (b, _rb) = CallSink::new("b", Instant::now());
        let mut q = FairQueue::default();
        for id in 0..50 {
            q.push_final(job(&a, id, true));
        }
        assert_eq!(who(&q.pop(true).unwrap()), ("a".into(), 0));
        q.push_final(job(&b, 0, true));
        assert_eq!(who(&q.pop(true).unwrap()), ("b".into(), 0));
        assert_eq!(q.finals_of(&job(&a, 0, true)), 49);
    }

    #[test]
    fn a_call_whose_queue_empties_keeps_its_turn() {
        let (a, _ra) = CallSink::new("a", Instant::now());
        let (b, _rb) = CallSink::new("b", Instant::now());
        let mut q = FairQueue::default();
        q.push_final(job(&a, 0, true));
        assert_eq!(who(&q.pop(true).unwrap()), ("a".into(), 0));
        // a's next final arrives while its first is decoding, then b's.
        q.push_final(job(&a, 1, true));
        q.push_final(job(&b, 0, true));
        assert_eq!(who(&q.pop(true).unwrap()), ("b".into(), 0));
        assert_eq!(who(&q.pop(true).unwrap()), ("a".into(), 1));
    }

    #[test]
    fn an_ended_call_leaves_the_queue() {
        let (a, ra) = CallSink::new("a", Instant::now());
        let (b, _rb) = CallSink::new("b", Instant::now());
        let mut q = FairQueue::default();
        q.push_final(job(&a, 0, true));
        drop(q.pop(true));
        drop((a, ra));
        q.push_final(job(&b, 0, true));
        assert_eq!(q.calls.len(), 1);
    }

    #[test]
    fn partials_are_replaced_and_shed_from_the_fullest_call() {
        let (a, _ra) = CallSink::new("a", Instant::now());
        let (b, _rb) = CallSink::new("b", Instant::now());
        let mut q = FairQueue::default();
        assert_eq!(q.push_partial(job(&a, 1, false), 3), 0);
        assert_eq!(q.push_partial(job(&a, 1, false), 3), 1, "a newer revision replaces");
        q.push_partial(job(&a, 2, false), 3);
        q.push_partial(job(&b, 1, false), 3);
        assert_eq!(q.push_partial(job(&b, 2, false), 3), 1, "full: one shed");
        // a held two, so its oldest (utterance 1) went.
        let left: Vec<_> = std::iter::from_fn(|| q.pop(true)).map(|j| who(&j)).collect();
        assert_eq!(left.len(), 3);
        assert!(!left.contains(&("a".into(), 1)), "{left:?}");
        // A final removes its utterance's partials.
        q.push_partial(job(&a, 5, false), 3);
        assert_eq!(q.push_final(job(&a, 5, true)), 1);
        assert_eq!(q.len(), 1);
        assert!(q.pop(false).unwrap().is_final);
        assert!(q.pop(false).is_none());
    }
}
