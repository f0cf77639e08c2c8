//! `Admin`: reloading the rulebook while calls go on, and reading the
//! audit log.

use std::path::PathBuf;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::audit::{self, Action};
use crate::context::{LoadedRules, Shared};
use crate::store::AuditQuery;
use crate::{auth, pb};

pub struct Admin {
    pub shared: Arc<Shared>,
}

fn info(rules: &LoadedRules) -> pb::RulesInfo {
    pb::RulesInfo {
        path: rules.source(),
        rule_ids: rules.book.rules.iter().map(|r| r.id.to_string()).collect(),
        text: rules.text.clone(),
        loaded_unix_ms: rules.loaded_unix_ms,
    }
}

/// Audit events per page when the request names none, and at most.
const PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

#[tonic::async_trait]
impl pb::admin_server::Admin for Admin {
    async fn reload_rules(&self, request: Request<pb::ReloadRulesRequest>) -> Result<Response<pb::RulesInfo>, Status> {
        let who = auth::identity(&request)?;
        who.may_administer()?;
        let peer = request.remote_addr();
        // No path: the configured file again, or the built-in book.
        let path = match request.into_inner().path {
            p if p.is_empty() => self.shared.config.rules.clone(),
            p => Some(PathBuf::from(p)),
        };
        let shared = self.shared.clone();
        let (loaded, row) = tokio::task::spawn_blocking(move || {
            let loaded = LoadedRules::load(path.as_deref());
            let detail = match &loaded {
                Ok(rules) => format!("loaded {}", rules.source()),
                Err(e) => format!("refused: {e:#}"),
            };
            let row = shared
                .audit
                .record(&audit::event(Some(&who), Action::ReloadRules, "", peer, detail));
            (loaded, row)
        })
        .await
        .map_err(|_| Status::internal("the rules loader panicked"))?;
        row.map_err(|e| Status::internal(format!("store: {e:#}")))?;
        // The rules in use stay: nothing has been swapped yet.
        let loaded = loaded.map_err(|e| Status::invalid_argument(format!("{e:#}")))?;
        let reply = info(&loaded);
        tracing::info!(path = %reply.path, rules = reply.rule_ids.len(), "rules reloaded");
        *self.shared.rules.write().expect("poisoned") = Arc::new(loaded);
        Ok(Response::new(reply))
    }

    async fn get_rules(&self, request: Request<pb::GetRulesRequest>) -> Result<Response<pb::RulesInfo>, Status> {
        auth::identity(&request)?.may_administer()?;
        Ok(Response::new(info(&self.shared.rules())))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        auth::identity(&request)?.may_read_audit()?;
        let req = request.into_inner();
        let limit = if req.limit == 0 { PAGE } else { req.limit.min(MAX_PAGE) };
        let nonzero = |ms: i64| (ms != 0).then_some(ms);
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        let query = AuditQuery {
            since_unix_ms: nonzero(req.since_unix_ms),
            until_unix_ms: nonzero(req.until_unix_ms),
            actor: nonempty(req.actor),
            call_id: nonempty(req.call_id),
            after_seq: req.after_seq,
            limit,
        };
        let store = self.shared.store.clone();
        let events = tokio::task::spawn_blocking(move || store.audit_events(&query))
            .await
            .map_err(|_| Status::internal("a store task panicked"))?
            .map_err(|e| Status::internal(format!("store: {e:#}")))?;
        // A full page may have more behind it.
        let next_after_seq = match events.last() {
            Some(last) if events.len() == limit as usize => last.seq,
            _ => 0,
        };
        Ok(Response::new(pb::ListAuditEventsResponse { events, next_after_seq }))
    }
}
