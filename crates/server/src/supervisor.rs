//! `Supervisor`: the dashboards' side. Team scoping is applied here, from
//! the caller's identity (see [`crate::auth`]).

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::audit::{self, Action};
use crate::context::Shared;
use crate::cursor::Cursor;
use crate::feed::Start;
use crate::filter::{Filter, Meta};
use crate::store::AckError;
use crate::{auth, pb, search};
use callwatch_core::time::now_unix_ms;
use pb::call_update::Update;

/// Longest note a claim may carry: it is stored with the claim and sent to
/// every watcher of the feed.
const MAX_NOTE_BYTES: usize = 2048;

pub struct Supervisor {
    pub shared: Arc<Shared>,
}

impl Supervisor {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// Runs store work off the async runtime (SQLite blocks).
async fn in_store<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Shared) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Status> {
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || f(&shared))
        .await
        .map_err(|_| Status::internal("a store task panicked"))?
        .map_err(|e| Status::internal(format!("store: {e:#}")))
}

fn not_found(call_id: &str) -> Status {
    Status::not_found(format!("no call {call_id:?}"))
}

/// A call outside the caller's teams is answered exactly as one that does
/// not exist, so no token learns which call ids exist elsewhere, or their
/// team.
fn in_scope(who: &auth::Identity, team: &str, call_id: &str) -> Result<(), Status> {
    who.may_supervise(team).map_err(|_| not_found(call_id))
}

#[tonic::async_trait]
impl pb::supervisor_server::Supervisor for Supervisor {
    type WatchAlertsStream = ReceiverStream<Result<pb::AlertEvent, Status>>;
    type WatchCallStream = ReceiverStream<Result<pb::CallUpdate, Status>>;

    async fn watch_alerts(
        &self,
        request: Request<pb::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let who = auth::identity(&request)?;
        self.shared.accepting()?;
        let req = request.into_inner();
        let start = match req.resume_after.as_str() {
            "" if req.backlog > 0 => Start::Backlog(req.backlog),
            "" => Start::Now,
            c => Start::After(c.parse::<Cursor>().map_err(Status::invalid_argument)?),
        };
        let filter = Filter {
            team: who.teams_for(&req.team)?,
            agent_id: (!req.agent_id.is_empty()).then_some(req.agent_id),
            min_severity: req.min_severity,
            rule_id: (!req.rule_id.is_empty()).then_some(req.rule_id),
        };
        // Behind this queue, the feed's own per-subscriber queue, then the store.
        let (tx, rx) = mpsc::channel(self.shared.config.limits.subscriber_queue);
        if filter.team.is_none() {
            tokio::spawn(service_alerts(&self.shared, tx.clone()));
        }
        let feed = self.shared.feed.clone();
        tokio::spawn(feed.follow(filter, start, tx, self.shared.shutdown.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn watch_call(
        &self,
        request: Request<pb::WatchCallRequest>,
    ) -> Result<Response<Self::WatchCallStream>, Status> {
        let who = auth::identity(&request)?;
        let peer = request.remote_addr();
        // Agents are told they may not watch before anything is looked up.
        who.teams_for("")?;
        self.shared.accepting()?;
        let call_id = request.into_inner().call_id;
        let live = self.shared.calls.get(&call_id);
        // Subscribe before the snapshot: nothing falls between the two.
        let updates = live.as_ref().map(|c| c.updates.subscribe());
        let snapshot = Self::snapshot_of(&self.shared, &call_id)
            .await?
            .ok_or_else(|| not_found(&call_id))?;
        let team = snapshot.first().and_then(|u| match &u.update {
            Some(Update::Call(info)) => Some(info.team.clone()),
            _ => None,
        });
        in_scope(&who, team.as_deref().unwrap_or_default(), &call_id)?;
        let row = audit::event(Some(&who), Action::WatchCall, &call_id, peer, "");
        in_store(&self.shared, move |s| s.audit.record(&row)).await?;
        let (tx, rx) = mpsc::channel(self.shared.config.limits.subscriber_queue);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            for update in snapshot {
                if tx.send(Ok(update)).await.is_err() {
                    return;
                }
            }
            let Some(mut updates) = updates else { return };
            let mut shutdown = shared.shutdown.clone();
            loop {
                let update = tokio::select! {
                    u = updates.recv() => u,
                    _ = shutdown.changed() => return,
                };
                match update {
                    Ok(update) => {
                        let over =
                            matches!(&update.update, Some(Update::Call(i)) if i.state != pb::CallState::Live as i32);
                        if tx.send(Ok(update)).await.is_err() || over {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(call = %call_id, missed, "a call watcher fell behind; sending a fresh snapshot");
                        match Supervisor::snapshot_of(&shared, &call_id).await {
                            Ok(Some(snapshot)) => {
                                for update in snapshot {
                                    if tx.send(Ok(update)).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            _ => return,
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_calls(
        &self,
        request: Request<pb::ListCallsRequest>,
    ) -> Result<Response<pb::ListCallsResponse>, Status> {
        let who = auth::identity(&request)?;
        let req = request.into_inner();
        let team = who.teams_for(&req.team)?;
        let mut calls = self.shared.calls.list(team.as_deref());
        let recent = if req.recent == 0 { 50 } else { req.recent.min(1000) };
        let ended = in_store(&self.shared, move |s| s.store.recent_calls(team.as_deref(), recent)).await?;
        // A call that just ended may be in both lists.
        let live: std::collections::HashSet<String> = calls.iter().map(|c| c.call_id.clone()).collect();
        calls.extend(ended.into_iter().filter(|c| !live.contains(&c.call_id)));
        Ok(Response::new(pb::ListCallsResponse { calls }))
    }

    async fn get_call(&self, request: Request<pb::GetCallRequest>) -> Result<Response<pb::CallRecord>, Status> {
        let who = auth::identity(&request)?;
        let peer = request.remote_addr();
        who.teams_for("")?;
        let call_id = request.into_inner().call_id;
        let id = call_id.clone();
        let mut record = in_store(&self.shared, move |s| s.store.record(&id))
            .await?
            .ok_or_else(|| not_found(&call_id))?;
        in_scope(&who, record.call.as_ref().map_or("", |c| c.team.as_str()), &call_id)?;
        let row = audit::event(Some(&who), Action::GetCall, &call_id, peer, "");
        in_store(&self.shared, move |s| s.audit.record(&row)).await?;
        if let Some(live) = self.shared.calls.get(&call_id) {
            record.call = Some(live.info());
            record.scorecard = Some(live.scorecard.lock().expect("poisoned").clone());
        }
        Ok(Response::new(record))
    }

    async fn search_calls(
        &self,
        request: Request<pb::SearchCallsRequest>,
    ) -> Result<Response<pb::SearchCallsResponse>, Status> {
        let who = auth::identity(&request)?;
        let query = search::query_for(&who, request.into_inner())?;
        let calls = {
            let query = query.clone();
            in_store(&self.shared, move |s| s.store.search_calls(&query)).await?
        };
        Ok(Response::new(search::page(&query, calls)))
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let who = auth::identity(&request)?;
        let team = match &who.role {
            auth::Role::Supervisor(Some(team)) => team.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::WhoAmIResponse {
            name: who.name,
            role: who.role.to_string(),
            team,
        }))
    }

    async fn acknowledge_alert(
        &self,
        request: Request<pb::AcknowledgeAlertRequest>,
    ) -> Result<Response<pb::Acknowledgement>, Status> {
        let who = auth::identity(&request)?;
        let peer = request.remote_addr();
        who.teams_for("")?;
        let req = request.into_inner();
        if req.note.len() > MAX_NOTE_BYTES {
            return Err(Status::invalid_argument(format!(
                "note is {} bytes, over the limit of {MAX_NOTE_BYTES}",
                req.note.len()
            )));
        }
        let shared = self.shared.clone();
        let claimed = tokio::task::spawn_blocking(move || -> Result<pb::Acknowledgement, Status> {
            let internal = |e: anyhow::Error| Status::internal(format!("store: {e:#}"));
            let (info, _) = shared
                .store
                .call(&req.call_id)
                .map_err(internal)?
                .ok_or_else(|| not_found(&req.call_id))?;
            in_scope(&who, &info.team, &req.call_id)?;
            let claimable = || -> Result<Meta, Status> {
                match shared.store.check_claim(&req.call_id, req.alert_id).map_err(internal)? {
                    Ok(meta) => Ok(meta),
                    Err(e @ AckError::NoSuchAlert(..)) => Err(Status::not_found(e.to_string())),
                    Err(e @ AckError::AlreadyClaimed(..)) => Err(Status::already_exists(e.to_string())),
                }
            };
            let meta = claimable()?;
            let ack = pb::Acknowledgement {
                call_id: req.call_id.clone(),
                alert_id: req.alert_id,
                by: who.name.clone(),
                at_unix_ms: now_unix_ms(),
                note: req.note.clone(),
            };
            let event = pb::AlertEvent {
                at_unix_ms: ack.at_unix_ms,
                event: Some(pb::alert_event::Event::Acknowledgement(ack.clone())),
                ..Default::default()
            };
            // The feed keeps one claim per alert: of two supervisors (or
            // servers) claiming at once, the second records nothing and is
            // told who won.
            if !shared.feed.record(meta, event).map_err(internal)?.fresh {
                claimable()?;
            }
            let detail = format!("alert {}", req.alert_id);
            let row = audit::event(Some(&who), Action::AcknowledgeAlert, &req.call_id, peer, detail);
            shared.audit.record(&row).map_err(internal)?;
            Ok(ack)
        })
        .await
        .map_err(|_| Status::internal("a store task panicked"))??;
        if let Some(live) = self.shared.calls.get(&claimed.call_id) {
            live.publish(Update::Acknowledgement(claimed.clone()));
        }
        Ok(Response::new(claimed))
    }
}

/// Alerts about the service itself (the store failing: see
/// `store::watched`) to a watcher of every team, until it goes away or the
/// server stops. They are not in the store, so they have no cursor.
fn service_alerts(
    shared: &Arc<Shared>,
    tx: mpsc::Sender<Result<pb::AlertEvent, Status>>,
) -> impl std::future::Future<Output = ()> {
    let mut alerts = shared.store_health.service_alerts();
    let mut shutdown = shared.shutdown.clone();
    async move {
        loop {
            let alert = tokio::select! {
                a = alerts.recv() => a,
                _ = tx.closed() => return,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match alert {
                Ok(alert) => {
                    if tx.send(Ok(alert)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

impl Supervisor {
    /// What is known of a call now, as updates: its info first, then the
    /// final transcript, alerts, retractions, claims and the scorecard.
    async fn snapshot_of(shared: &Arc<Shared>, call_id: &str) -> Result<Option<Vec<pb::CallUpdate>>, Status> {
        let id = call_id.to_owned();
        let record = in_store(shared, move |s| s.store.record(&id)).await?;
        let Some(record) = record else { return Ok(None) };
        let live = shared.calls.get(call_id);
        let info = live.as_ref().map(|c| c.info()).or(record.call);
        let scorecard = live
            .as_ref()
            .map(|c| c.scorecard.lock().expect("poisoned").clone())
            .or(record.scorecard);
        let updates = info
            .map(Update::Call)
            .into_iter()
            .chain(record.transcript.into_iter().map(Update::Transcript))
            .chain(record.alerts.into_iter().map(Update::Alert))
            .chain(record.retractions.into_iter().map(Update::Retraction))
            .chain(record.acknowledgements.into_iter().map(Update::Acknowledgement))
            .chain(scorecard.map(Update::Scorecard))
            .map(|u| pb::CallUpdate { update: Some(u) })
            .collect();
        Ok(Some(updates))
    }
}
