//! Each agent's live channel to their panel (`AgentDesk.WatchNudges`):
//! sessions publish nudges and call changes, the agent service subscribes.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::pb;

/// Updates an agent's panel may fall behind by; older ones are overwritten
/// (a nudge is useful now or not at all; the supervisor feed keeps alerts).
pub const DESK_QUEUE: usize = 64;

/// Per-agent live channels.
#[derive(Default)]
pub struct Desks {
    agents: Mutex<HashMap<String, broadcast::Sender<pb::AgentUpdate>>>,
}

impl Desks {
    pub fn subscribe(&self, agent_id: &str) -> broadcast::Receiver<pb::AgentUpdate> {
        let mut agents = self.agents.lock().expect("poisoned");
        agents
            .entry(agent_id.to_owned())
            .or_insert_with(|| broadcast::channel(DESK_QUEUE).0)
            .subscribe()
    }

    pub fn publish(&self, agent_id: &str, update: pb::agent_update::Update) {
        let mut agents = self.agents.lock().expect("poisoned");
        if let Some(tx) = agents.get(agent_id) {
            if tx.send(pb::AgentUpdate { update: Some(update) }).is_err() {
                // Nobody is watching any more: forget the channel.
                agents.remove(agent_id);
            }
        }
    }
}
