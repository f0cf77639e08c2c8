//! One call's event queue. The call's front end and the shared transcriber
//! pool send into it through the [`CallSink`]; the call's consumer reads it
//! through the [`EventReceiver`], in the order the events were sent.
//!
//! What happens when the consumer falls [`EVENT_QUEUE`] events behind
//! depends on the event, so that a consumer that stops reading slows its own
//! call and nothing else:
//!
//! | event | sent by | queue full |
//! |---|---|---|
//! | voice, tick | the call's front end (its own thread) | waits for room: back-pressure on this call only; its rings then fill and, past `ring_s`, drop samples (counted) |
//! | final transcript | a pool worker | queued beyond the capacity: a worker never waits on a call, and no final is lost |
//! | partial transcript | a pool worker | dropped and counted (`callwatch_partials_dropped_total`): a newer revision or the final follows |
//!
//! A partial whose utterance already has its final queued is stale (two
//! workers can finish out of order) and is dropped too.
//!
//! Bound: past the capacity only finals are queued, and only those the front
//! end handed the pool before it had to wait for room: while it waits it
//! analyses no audio and so ends no utterance. Those finals are in flight,
//! which the pool bounds by its `max_finals` queued plus one decoding per
//! worker. A call's queue therefore holds at most `EVENT_QUEUE` events plus
//! the pool's `max_finals` + workers.
//!
//! A receiver that is dropped (the consumer quit) turns every send into a
//! no-op, and a front end waiting for room stops waiting. The receiver sees
//! the end of the stream once the sink is gone (the front end has finished
//! and every job holding the sink has been delivered) and the queue is empty.

use std::collections::{HashSet, VecDeque};
use std::sync::mpsc::{RecvError, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::Event;
use crate::audio::Channel;

/// Events a call's consumer may fall behind before its front end waits and
/// its partials are dropped.
pub const EVENT_QUEUE: usize = 256;

struct State {
    events: VecDeque<Event>,
    /// Utterances whose final is queued: a partial of one is stale.
    finalized: HashSet<(Channel, u64)>,
    /// Finals handed to the decoder and not yet queued: (channel, utterance, start).
    inflight: Vec<(Channel, u64, f64)>,
    receiver_gone: bool,
    sink_gone: bool,
    /// Why part of the call could not be processed (the first reason).
    fault: Option<String>,
}

struct Queue {
    state: Mutex<State>,
    /// Signalled when an event is queued or the sink is gone.
    readable: Condvar,
    /// Signalled when the queue drops below capacity or the receiver is gone.
    room: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("poisoned")
    }
}

/// The sending side of one call's event stream, shared by its front end and
/// the transcriber pool.
pub struct CallSink {
    pub call_id: Arc<str>,
    pub started: Instant,
    queue: Arc<Queue>,
}

impl CallSink {
    pub fn new(call_id: &str, started: Instant) -> (Arc<Self>, EventReceiver) {
        let queue = Arc::new(Queue {
            state: Mutex::new(State {
                events: VecDeque::with_capacity(EVENT_QUEUE),
                finalized: HashSet::new(),
                inflight: Vec::new(),
                receiver_gone: false,
                sink_gone: false,
                fault: None,
            }),
            readable: Condvar::new(),
            room: Condvar::new(),
        });
        let sink = Arc::new(Self {
            call_id: call_id.into(),
            started,
            queue: queue.clone(),
        });
        (sink, EventReceiver { queue })
    }

    /// Queues an event under the policy of its kind (see the module docs):
    /// a voice event or tick may wait for room, a transcript never waits.
    pub fn send(&self, event: Event) {
        let mut s = self.queue.lock();
        match &event {
            Event::Transcript(t) if t.is_final => {
                let key = (t.channel, t.utterance_id);
                s.finalized.insert(key);
                // Under the same lock as the push: a tick computed after this
                // no longer holds `words_s` back for an utterance whose final
                // is queued, and one computed before it is queued behind it.
                s.inflight.retain(|(c, i, _)| (*c, *i) != key);
            }
            Event::Transcript(t) => {
                if s.finalized.contains(&(t.channel, t.utterance_id)) {
                    return;
                }
                if s.events.len() >= EVENT_QUEUE && !s.receiver_gone {
                    metrics::counter!("callwatch_partials_dropped_total").increment(1);
                    return;
                }
            }
            Event::Voice { .. } | Event::Tick { .. } => {
                while s.events.len() >= EVENT_QUEUE && !s.receiver_gone {
                    s = self.queue.room.wait(s).expect("poisoned");
                }
            }
        }
        if !s.receiver_gone {
            s.events.push_back(event);
            self.queue.readable.notify_one();
        }
    }

    /// Registers a final handed to the decoder, holding `words_s` back until
    /// it is queued.
    pub fn begin_final(&self, channel: Channel, utterance_id: u64, start_s: f64) {
        self.queue.lock().inflight.push((channel, utterance_id, start_s));
    }

    /// Start of the oldest final still being decoded.
    pub fn oldest_inflight(&self) -> Option<f64> {
        self.queue.lock().inflight.iter().map(|f| f.2).min_by(f64::total_cmp)
    }

    /// Records that part of the call could not be processed (a final that
    /// could not be decoded): the call goes on, and its `join` reports the
    /// first such reason as the call's failure.
    pub fn fail(&self, why: String) {
        self.queue.lock().fault.get_or_insert(why);
    }

    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl Drop for CallSink {
    /// The last holder (front end or job) is done: no more events will come.
    fn drop(&mut self) {
        self.queue.lock().sink_gone = true;
        self.queue.readable.notify_all();
    }
}

/// The receiving side of one call's event stream, with the methods of
/// `std::sync::mpsc::Receiver` that consumers use.
pub struct EventReceiver {
    queue: Arc<Queue>,
}

impl EventReceiver {
    /// Takes the next event, waiting for one; `Err` once the stream has ended.
    pub fn recv(&self) -> Result<Event, RecvError> {
        let mut s = self.queue.lock();
        loop {
            if let Some(event) = self.pop(&mut s) {
                return Ok(event);
            }
            if s.sink_gone {
                return Err(RecvError);
            }
            s = self.queue.readable.wait(s).expect("poisoned");
        }
    }

    /// Takes the next event, waiting at most `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        let mut s = self.queue.lock();
        loop {
            if let Some(event) = self.pop(&mut s) {
                return Ok(event);
            }
            if s.sink_gone {
                return Err(RecvTimeoutError::Disconnected);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvTimeoutError::Timeout);
            }
            s = self.queue.readable.wait_timeout(s, left).expect("poisoned").0;
        }
    }

    /// Takes the next event if one is queued.
    pub fn try_recv(&self) -> Result<Event, TryRecvError> {
        let mut s = self.queue.lock();
        match self.pop(&mut s) {
            Some(event) => Ok(event),
            None if s.sink_gone => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Events sent and not yet read: the consumer's backlog. At
    /// `EVENT_QUEUE` or more, the call's front end is waiting for room.
    pub fn backlog(&self) -> usize {
        self.queue.lock().events.len()
    }

    /// The first failure recorded with [`CallSink::fail`].
    pub fn fault(&self) -> Option<String> {
        self.queue.lock().fault.clone()
    }

    /// Every event until the stream ends, waiting for each.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(|| self.recv().ok())
    }

    fn pop(&self, s: &mut State) -> Option<Event> {
        let event = s.events.pop_front()?;
        if s.events.len() < EVENT_QUEUE {
            self.queue.room.notify_all();
        }
        Some(event)
    }
}

impl Drop for EventReceiver {
    /// The consumer quit: senders stop queueing and stop waiting for room.
    fn drop(&mut self) {
        let mut s = self.queue.lock();
        s.receiver_gone = true;
        s.events.clear();
        drop(s);
        self.queue.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> (Arc<CallSink>, EventReceiver) {
        CallSink::new("c", Instant::now())
    }

    fn tick(t_s: f64) -> Event {
        Event::Tick {
            call_id: "c".into(),
            t_s,
            words_s: t_s,
            voiced_until: Vec::new(),
        }
    }

    fn text(utterance_id: u64, revision: u32, is_final: bool) -> Event {
        Event::Transcript(super::super::Transcript {
            call_id: "c".into(),
            channel: Channel::Agent,
            utterance_id,
            revision,
            is_final,
            start_s: utterance_id as f64,
            end_s: utterance_id as f64 + 0.5,
            text: format!("u{utterance_id} r{revision}"),
            tokens: Vec::new(),
            ready_after_s: 0.0,
        })
    }

    /// Fills the queue with ticks, as when the consumer stopped reading.
    fn fill(sink: &CallSink) {
        let queued = sink.queue.lock().events.len();
        for i in queued..EVENT_QUEUE {
            sink.send(tick(i as f64 / 10.0));
        }
    }

    fn drain(rx: &EventReceiver) -> Vec<Event> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    /// Runs `f` on another thread and says whether it returned within `limit`.
    fn returns_within(limit: Duration, f: impl FnOnce() + Send + 'static) -> bool {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = done.send(());
        });
        finished.recv_timeout(limit).is_ok()
    }

    #[test]
    fn a_worker_never_waits_on_a_stalled_receiver() {
        let (sink, rx) = sink();
        fill(&sink);
        let worker_sink = sink.clone();
        let delivered = returns_within(Duration::from_secs(5), move || {
            for id in 0..100 {
                worker_sink.send(text(id, 0, false));
                worker_sink.send(text(id, 1, true));
            }
        });
        assert!(delivered, "a transcript send waited on a full queue");
        let events = drain(&rx);
        assert_eq!(
            events.len(),
            EVENT_QUEUE + 100,
            "every final queued, every partial dropped"
        );
        assert!(events[EVENT_QUEUE..]
            .iter()
            .all(|e| matches!(e, Event::Transcript(t) if t.is_final)));
    }

    #[test]
    fn the_front_end_waits_for_room_and_loses_nothing() {
        let (sink, rx) = sink();
        fill(&sink);
        let front_end = sink.clone();
        let (sent, was_sent) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            front_end.send(tick(99.0));
            sent.send(()).unwrap();
        });
        assert!(
            was_sent.recv_timeout(Duration::from_millis(200)).is_err(),
            "a tick overran a full queue"
        );
        rx.recv().unwrap();
        was_sent.recv_timeout(Duration::from_secs(5)).expect("no room made");
        let events = drain(&rx);
        assert_eq!(events.len(), EVENT_QUEUE);
        assert_eq!(events.last(), Some(&tick(99.0)));
    }

    #[test]
    fn events_arrive_in_the_order_sent_across_the_capacity() {
        let (sink, rx) = sink();
        fill(&sink);
        sink.send(text(1, 3, true));
        sink.send(text(2, 0, true));
        let front_end = sink.clone();
        let waiting = std::thread::spawn(move || front_end.send(tick(50.0)));
        let events: Vec<Event> = std::iter::repeat_with(|| rx.recv().unwrap())
            .take(EVENT_QUEUE + 3)
            .collect();
        waiting.join().unwrap();
        let mut want: Vec<Event> = (0..EVENT_QUEUE).map(|i| tick(i as f64 / 10.0)).collect();
        want.extend([text(1, 3, true), text(2, 0, true), tick(50.0)]);
        assert_eq!(events, want);
    }

    #[test]
    fn partials_are_dropped_when_full_or_stale() {
        let (sink, rx) = sink();
        sink.send(text(7, 0, false));
        sink.send(text(7, 2, true));
        // A worker that finished an older revision after the final.
        sink.send(text(7, 1, false));
        fill(&sink);
        sink.send(text(8, 0, false));
        let events = drain(&rx);
        assert_eq!(&events[..2], &[text(7, 0, false), text(7, 2, true)]);
        assert_eq!(events.len(), EVENT_QUEUE, "the partial past the capacity is dropped");
    }

    #[test]
    fn words_s_is_held_back_until_the_final_is_queued() {
        let (sink, _rx) = sink();
        sink.begin_final(Channel::Agent, 3, 3.0);
        sink.begin_final(Channel::Customer, 3, 4.5);
        fill(&sink);
        assert_eq!(sink.oldest_inflight(), Some(3.0));
        // Queued past the capacity, it counts as delivered.
        sink.send(text(3, 0, true));
        assert_eq!(sink.oldest_inflight(), Some(4.5));
    }

    #[test]
    fn a_gone_receiver_releases_the_front_end() {
        let (sink, rx) = sink();
        fill(&sink);
        let front_end = sink.clone();
        let (sent, was_sent) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            front_end.send(tick(99.0));
            sent.send(()).unwrap();
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        was_sent
            .recv_timeout(Duration::from_secs(5))
            .expect("the front end still waits for a consumer that quit");
        // Sends after the consumer quit are no-ops, not errors.
        assert!(returns_within(Duration::from_secs(5), move || {
            sink.send(tick(100.0));
            sink.send(text(1, 0, true));
        }));
    }

    #[test]
    fn the_stream_ends_when_the_sink_is_gone_and_drained() {
        let (sink, rx) = sink();
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout)
        );
        let job = sink.clone();
        sink.send(tick(0.1));
        drop(sink);
        // A job still holds the sink: its final may yet come.
        assert_eq!(rx.recv(), Ok(tick(0.1)));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            job.send(text(1, 0, true));
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(text(1, 0, true)));
        late.join().unwrap();
        assert_eq!(rx.recv(), Err(RecvError));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(rx.iter().count(), 0);
    }
}
