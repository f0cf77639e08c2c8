//! `Supervisor.SearchCalls`: a request, checked against the caller's role,
//! becomes a [`SearchQuery`] for the store. Scoping is decided here: a
//! supervisor searches its team (every team for `supervisor:*` and admin),
//! an agent its own calls only.

use tonic::Status;

use crate::auth::{Identity, Role};
use crate::pb;
use crate::store::SearchQuery;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

/// The store query for `req` as `who` may ask it, one row more than the
/// page (to know whether another page follows).
pub fn query_for(who: &Identity, req: pb::SearchCallsRequest) -> Result<SearchQuery, Status> {
    let (team, agent_id) = match &who.role {
        Role::Agent(own) if req.agent_id.is_empty() || req.agent_id == *own => {
            (nonempty(req.team.clone()), Some(own.clone()))
        }
        Role::Agent(own) => {
            return Err(Status::permission_denied(format!(
                "{} (agent {own}) may search only its own calls",
                who.name
            )))
        }
        _ => (who.teams_for(&req.team)?, nonempty(req.agent_id.clone())),
    };
    let offset = parse_page_token(&req.page_token)?;
    let size = match req.page_size {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let channel = match req.channel() {
        pb::Channel::Unspecified => None,
        c => Some(c as i32),
    };
    let states = req.states.clone();
    if let Some(bad) = states
        .iter()
        .find(|&&s| s == pb::CallState::Live as i32 || pb::CallState::try_from(s).is_err())
    {
        return Err(Status::invalid_argument(format!(
            "states: {bad} is not an end (ENDED, DROPPED or ABORTED)"
        )));
    }
    Ok(SearchQuery {
        words: nonempty(req.words.trim().to_owned()),
        channel,
        rule_fired: nonempty(req.rule_id),
        team,
        agent_id,
        from_unix_ms: (req.from_unix_ms != 0).then_some(req.from_unix_ms),
        to_unix_ms: (req.to_unix_ms != 0).then_some(req.to_unix_ms),
        min_score: req.min_score,
        max_score: req.max_score,
        min_duration_s: req.min_duration_s,
        max_duration_s: req.max_duration_s,
        states,
        offset,
        limit: size + 1,
    })
}

/// The page from the store's rows: at most `query.limit - 1` calls, and the
/// token for the next page when there were more.
pub fn page(query: &SearchQuery, mut calls: Vec<pb::CallInfo>) -> pb::SearchCallsResponse {
    let size = query.limit - 1;
    let more = calls.len() > size as usize;
    calls.truncate(size as usize);
    pb::SearchCallsResponse {
        calls,
        next_page_token: if more {
            format!("o{}", query.offset + size)
        } else {
            String::new()
        },
    }
}

fn parse_page_token(token: &str) -> Result<u32, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix('o')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Status::invalid_argument(format!("page_token {token:?} is not one this server gave")))
}

fn nonempty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}
