//! What call sessions share: the live-call slots, the session threads that
//! hold them, and the transcript filter.
//!
//! A call takes a slot (a semaphore permit, and one of its agent's
//! `limits.calls_per_agent`) before anything is allocated for it and gives
//! it back only when its session has fully ended (stored, published,
//! removed from the live calls). Both are taken without waiting and
//! atomically (the permit by the semaphore, the agent's count under one
//! lock), so neither limit is overshot however many calls start at once,
//! and shutdown waits for the sessions by taking every permit back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::transcript_filter::TranscriptFilter;

pub struct Sessions {
    slots: Arc<Semaphore>,
    max: u32,
    per_agent: usize,
    /// Live calls by agent (agents with none are removed).
    agents: Arc<Mutex<HashMap<String, usize>>>,
    /// Session threads by call id; finished ones are pruned as calls start.
    threads: Mutex<Vec<(String, JoinHandle<()>)>>,
    filter: Arc<dyn TranscriptFilter>,
}

/// Why no slot was free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// All `limits.max_calls` are taken.
    Calls,
    /// The agent already streams `limits.calls_per_agent` calls.
    Agent,
}

/// One live call's place: held by its session until the call is stored.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    agent: String,
    agents: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut agents = self.agents.lock().expect("poisoned");
        if let Some(n) = agents.get_mut(&self.agent) {
            *n -= 1;
            if *n == 0 {
                agents.remove(&self.agent);
            }
        }
    }
}

impl Sessions {
    pub fn new(max_calls: usize, calls_per_agent: usize, filter: Arc<dyn TranscriptFilter>) -> Self {
        let max = u32::try_from(max_calls)
            .unwrap_or(u32::MAX)
            .min(Semaphore::MAX_PERMITS as u32);
        Self {
            slots: Arc::new(Semaphore::new(max as usize)),
            max,
            per_agent: calls_per_agent,
            agents: Arc::default(),
            threads: Mutex::new(Vec::new()),
            filter,
        }
    }

    /// What every word leaving a session passes.
    pub fn filter(&self) -> Arc<dyn TranscriptFilter> {
        self.filter.clone()
    }

    /// A slot for one call of `agent`, or which limit is reached. Never waits.
    pub fn slot(&self, agent: &str) -> Result<Slot, Full> {
        let mut agents = self.agents.lock().expect("poisoned");
        let n = agents.get(agent).copied().unwrap_or(0);
        if n >= self.per_agent {
            return Err(Full::Agent);
        }
        let permit = self.slots.clone().try_acquire_owned().map_err(|_| Full::Calls)?;
        agents.insert(agent.to_owned(), n + 1);
        Ok(Slot {
            _permit: permit,
            agent: agent.to_owned(),
            agents: self.agents.clone(),
        })
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
        let sessions = Sessions::new(2, 1, Arc::new(Verbatim));
        let a = sessions.slot("a1").unwrap();
        assert_eq!(sessions.slot("a1").err(), Some(Full::Agent));
        let _b = sessions.slot("a2").unwrap();
        assert_eq!(sessions.slot("a3").err(), Some(Full::Calls));
        assert_eq!(sessions.running(), 2);
        drop(a);
        assert!(sessions.slot("a1").is_ok());
        assert_eq!(sessions.agents.lock().unwrap().len(), 1, "a1's count went back to none");
    }

    #[test]
    fn neither_limit_is_overshot_by_a_race() {
        let sessions = Arc::new(Sessions::new(8, 2, Arc::new(Verbatim)));
        let start = Arc::new(std::sync::Barrier::new(100));
        let threads: Vec<_> = (0..100)
            .map(|i| {
                let (sessions, start) = (sessions.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    sessions.slot(&format!("a{}", i % 5))
                })
            })
            .collect();
        let taken: Vec<Slot> = threads.into_iter().filter_map(|t| t.join().unwrap().ok()).collect();
        assert_eq!(taken.len(), 8);
        let agents = sessions.agents.lock().unwrap();
        assert!(agents.values().all(|&n| n <= 2), "{agents:?}");
    }

    #[tokio::test]
    async fn drain_waits_for_sessions_and_no_longer_than_the_deadline() {
        let sessions = Sessions::new(4, 1, Arc::new(Verbatim));
        let quick = sessions.slot("a1").unwrap();
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

        let sessions = Sessions::new(4, 1, Arc::new(Verbatim));
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let slot = sessions.slot("a1").unwrap();
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
