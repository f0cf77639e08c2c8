//! What the service's end-to-end tests share: a server on 127.0.0.1:0 with
//! the real model and a token for every role, clients, scenario calls.

use std::path::Path;
use std::time::Instant;

use callwatch_client::{self as client, Connection, SoftphoneCall, WatchFilter};
use callwatch_core::audio;
use callwatch_core::rules::sidecar;
use callwatch_proto::pb::{self, alert_event::Event, server_message::Message as Out};
use callwatch_server::config::{ServeConfig, TokenEntry};
use callwatch_server::server::Server;
use tonic::Code;

use super::{fixture, q8_model};

pub const AGENT_A17: &str = "token-agent-a17";
pub const AGENT_B22: &str = "token-agent-b22";
pub const SUP_BILLING: &str = "token-sup-billing";
pub const SUP_BILLING_2: &str = "token-sup-billing-kim";
pub const SUP_SALES: &str = "token-sup-sales";
pub const SUP_ALL: &str = "token-sup-all";
pub const ADMIN: &str = "token-admin";

pub fn config(data: &Path) -> ServeConfig {
    let token = |token: &str, role: &str, name: &str| TokenEntry {
        token: token.into(),
        token_sha256: None,
        role: role.into(),
        name: Some(name.into()),
        // The tests replay calls as fast as the server takes them.
        fast: true,
    };
    let mut cfg = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: data.to_owned(),
        model: Some(q8_model()),
        workers: 2,
        rules: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml")),
        ..ServeConfig::default()
    };
    // The tests stream many calls at once as one agent; the per-agent
    // limit has its own test (streams.rs).
    cfg.limits.calls_per_agent = 64;
    cfg.auth.tokens = vec![
        token(AGENT_A17, "agent:a17", "Alex"),
        token(AGENT_B22, "agent:b22", "Bo"),
        token(SUP_BILLING, "supervisor:billing", "Sam"),
        token(SUP_BILLING_2, "supervisor:billing", "Kim"),
        token(SUP_SALES, "supervisor:sales", "Lee"),
        token(SUP_ALL, "supervisor:*", "Pat"),
        token(ADMIN, "admin", "root"),
    ];
    cfg
}

pub async fn start(data: &Path) -> Server {
    Server::start(config(data)).await.expect("the server starts")
}

pub fn conn(server: &Server, token: &str) -> Connection {
    Connection {
        server: format!("http://{}", server.addr),
        token: token.into(),
        ca: None,
        identity: None,
    }
}

/// A scenario call as a softphone streams it, with its sidecar events.
pub fn call(name: &str, call_id: &str, agent: &str, team: &str) -> SoftphoneCall {
    let wav = fixture(&format!("calls/{name}.wav"));
    SoftphoneCall {
        call_id: call_id.into(),
        agent_id: agent.into(),
        team: team.into(),
        recording: audio::read_wav(&wav).unwrap(),
        controls: sidecar::beside(&wav).unwrap(),
        fast: true,
        drop_at_end: false,
    }
}

/// Streams a call; returns everything the softphone received, and the end.
pub async fn stream(c: &Connection, call: SoftphoneCall) -> (Vec<pb::ServerMessage>, Option<pb::CallEnded>) {
    let mut received = Vec::new();
    let ended = client::softphone(c, call, |m| received.push(m.clone()))
        .await
        .expect("the call streams");
    (received, ended)
}

/// Follows the feed from `after` until `calls` calls have ended.
pub fn watch(c: &Connection, after: &str, calls: usize) -> tokio::task::JoinHandle<Vec<(pb::AlertEvent, Instant)>> {
    let (c, after) = (c.clone(), after.to_owned());
    tokio::spawn(async move {
        let mut events = Vec::new();
        client::watch(&c, WatchFilter::default(), after, Some(calls), |e| {
            events.push((e.clone(), Instant::now()))
        })
        .await
        .expect("the feed follows");
        events
    })
}

pub fn describe(e: &pb::AlertEvent) -> String {
    match e.event.as_ref().unwrap() {
        Event::Alert(a) => format!("alert {}", a.rule_id),
        Event::Retraction(r) => format!("retraction {}", r.alert_id),
        Event::Acknowledgement(a) => format!("ack {} by {}", a.alert_id, a.by),
        Event::CallStarted(_) => "call_started".into(),
        Event::CallEnded(_) => "call_ended".into(),
    }
}

pub fn nudges(messages: &[pb::ServerMessage]) -> Vec<pb::Alert> {
    messages
        .iter()
        .filter_map(|m| match &m.message {
            Some(Out::Nudge(a)) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

pub fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    result.err().expect("the request is refused").code()
}

pub fn cursor(e: &pb::AlertEvent) -> i64 {
    e.cursor[1..].parse().unwrap()
}
