//! `Admin`: reloading the rulebook while calls go on.

use std::path::PathBuf;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::context::{LoadedRules, Shared};
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

#[tonic::async_trait]
impl pb::admin_server::Admin for Admin {
    async fn reload_rules(&self, request: Request<pb::ReloadRulesRequest>) -> Result<Response<pb::RulesInfo>, Status> {
        auth::identity(&request)?.may_administer()?;
        // No path: the configured file again, or the built-in book.
        let path = match request.into_inner().path {
            p if p.is_empty() => self.shared.config.rules.clone(),
            p => Some(PathBuf::from(p)),
        };
        let loaded = tokio::task::spawn_blocking(move || LoadedRules::load(path.as_deref()))
            .await
            .map_err(|_| Status::internal("the rules loader panicked"))?
            // The rules in use stay: nothing has been swapped yet.
            .map_err(|e| Status::invalid_argument(format!("{e:#}")))?;
        let reply = info(&loaded);
        tracing::info!(path = %reply.path, rules = reply.rule_ids.len(), "rules reloaded");
        *self.shared.rules.write().expect("poisoned") = Arc::new(loaded);
        Ok(Response::new(reply))
    }

    async fn get_rules(&self, request: Request<pb::GetRulesRequest>) -> Result<Response<pb::RulesInfo>, Status> {
        auth::identity(&request)?.may_administer()?;
        Ok(Response::new(info(&self.shared.rules())))
    }
}
