//! What call sessions share: the live-call slots, the session threads that
//! hold them, and the transcript filter.
//!
//! A call takes a slot (a semaphore permit) before anything is allocated
//! for it and gives it back only when its session has fully ended (stored,
//! published, removed from the live calls). So `limits.max_calls` holds
//! however many calls start at once, and shutdown waits for the sessions by
//! taking every slot back.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::transcript_filter::TranscriptFilter;

pub struct Sessions {
    slots: Arc<Semaphore>,
    max: u32,
    /// Session threads by call id; finished ones are pruned as calls start.
    threads: Mutex<Vec<(String, JoinHandle<()>)>>,
    filter: Arc<dyn TranscriptFilter>,
}

impl Sessions {
    pub fn new(max_calls: usize, filter: Arc<dyn TranscriptFilter>) -> Self {
        let max = u32::try_from(max_calls)
            .unwrap_or(u32::MAX)
            .min(Semaphore::MAX_PERMITS as u32);
        Self {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
            threads: Mutex::new(Vec::new()),
            filter,
        }
    }

    /// What every word leaving a session passes.
    pub fn filter(&self) -> Arc<dyn TranscriptFilter> {
        self.filter.clone()
    }

    /// A slot for one call, or `None` when all are taken. Never waits.
    pub fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Calls holding a slot.
    pub fn running(&self) -> usize {
        self.max as usize - self.slots.available_permits()
    }

    /// Starts `call_id`'s session thread, which must hold its slot until it ends.
    pub fn spawn(&self, call_id: &str, session: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        // Linux keeps 15 bytes of a thread's name.
        let thread = std::thread::Builder::new()
            .name(format!("session-{call_id}").chars().take(15).collect())
            .spawn(session)?;
        let mut threads = self.threads.lock().expect("poisoned");
        threads.retain(|(_, t)| !t.is_finished());
        threads.push((call_id.to_owned(), thread));
        Ok(())
    }

    /// Waits until every session has ended or `deadline` passes; returns
    /// the calls whose sessions are still running (logged).
    pub async fn drain(&self, deadline: Instant) -> Vec<String> {
        // Every slot back means every session has ended.
        // (No call opens once shutdown has begun, so they may go back.)
        if let Ok(Ok(_all)) = tokio::time::timeout_at(deadline, self.slots.acquire_many(self.max)).await {
            return Vec::new();
        }
        let unfinished: Vec<String> = self
            .threads
            .lock()
            .expect("poisoned")
            .iter()
            .filter(|(_, t)| !t.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        tracing::warn!(?unfinished, "grace period over; stopping with calls unfinished");
        unfinished
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transcript_filter::Verbatim;

    #[test]
    fn slots_run_out_and_come_back() {
        let sessions = Sessions::new(2, Arc::new(Verbatim));
        let a = sessions.slot().unwrap();
        let _b = sessions.slot().unwrap();
        assert!(sessions.slot().is_none());
        assert_eq!(sessions.running(), 2);
        drop(a);
        assert!(sessions.slot().is_some());
    }

    #[tokio::test]
    async fn drain_waits_for_sessions_and_no_longer_than_the_deadline() {
        let sessions = Sessions::new(4, Arc::new(Verbatim));
        let quick = sessions.slot().unwrap();
        sessions
            .spawn("quick", move || {
                std::thread::sleep(Duration::from_millis(100));
                drop(quick);
            })
            .unwrap();
        let started = Instant::now();
        assert!(sessions.drain(started + Duration::from_secs(5)).await.is_empty());
        let waited = started.elapsed();
        assert_eq!(sessions.running(), 0);
        assert!(
            waited >= Duration::from_millis(90) && waited < Duration::from_secs(2),
            "{waited:?}"
        );

        let sessions = Sessions::new(4, Arc::new(Verbatim));
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let slot = sessions.slot().unwrap();
        sessions
            .spawn("a-stuck-call-with-a-long-id", move || {
                let _ = stuck.recv();
                drop(slot);
            })
            .unwrap();
        let started = Instant::now();
        let left = sessions.drain(started + Duration::from_millis(200)).await;
        let waited = started.elapsed();
        assert_eq!(left, ["a-stuck-call-with-a-long-id"]);
        assert!(
            waited >= Duration::from_millis(190) && waited < Duration::from_secs(1),
            "{waited:?}"
        );
        drop(release);
    }
}
