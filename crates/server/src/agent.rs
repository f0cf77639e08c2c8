//! `AgentDesk`: the agent panel's live nudges. Each agent has a broadcast
//! channel; the session threads of that agent's calls publish into it the
//! nudges they release (see `session::nudge::NudgeGate`).

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::{self, Role};
use crate::context::Shared;
use crate::desks::DESK_QUEUE;
use crate::pb;

pub struct AgentDesk {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl pb::agent_desk_server::AgentDesk for AgentDesk {
    type WatchNudgesStream = ReceiverStream<Result<pb::AgentUpdate, Status>>;

    async fn watch_nudges(
        &self,
        request: Request<pb::WatchNudgesRequest>,
    ) -> Result<Response<Self::WatchNudgesStream>, Status> {
        let who = auth::identity(&request)?;
        self.shared.accepting()?;
        let Role::Agent(agent_id) = who.role else {
            return Err(Status::permission_denied(format!(
                "{} ({}) is not an agent: the agent panel needs an agent:<id> token",
                who.name, who.role
            )));
        };
        let mut updates = self.shared.desks.subscribe(&agent_id);
        let mut shutdown = self.shared.shutdown.clone();
        let (tx, rx) = mpsc::channel(DESK_QUEUE);
        tokio::spawn(async move {
            loop {
                let update = tokio::select! {
                    u = updates.recv() => u,
                    _ = shutdown.changed() => return,
                    _ = tx.closed() => return,
                };
                match update {
                    Ok(update) => {
                        if tx.send(Ok(update)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(agent = %agent_id, missed, "an agent panel fell behind")
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
