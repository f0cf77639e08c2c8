//! Identity the server decides, against a real server on 127.0.0.1:0 with
//! real clients: `[[agents]]` binds each agent to its team whatever the
//! softphone claims, an agent token streams only its own agent, a 1 MB team
//! never reaches the store, and a call outside a supervisor's scope is
//! indistinguishable from one that does not exist.

mod common;

use callwatch_client::Connection;
use callwatch_proto::pb::{self, server_message::Message as Out};
use callwatch_server::config::AgentEntry;
use callwatch_server::server::Server;
use common::service::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

fn start_msg(call_id: &str, agent: &str, team: &str) -> pb::ClientMessage {
    pb::ClientMessage {
        message: Some(pb::client_message::Message::Start(pb::CallStart {
            call_id: call_id.into(),
            agent_id: agent.into(),
            team: team.into(),
            sample_rate: 8_000,
            encoding: pb::Encoding::Mulaw as i32,
            channels: vec![pb::Channel::Agent as i32, pb::Channel::Customer as i32],
            resume: None,
        })),
    }
}

/// Starts a call, streams one second of µ-law silence on both channels and
/// ends it: every message back, or the status that refused it.
async fn short_call(
    c: &Connection,
    call_id: &str,
    agent: &str,
    team: &str,
) -> Result<Vec<pb::ServerMessage>, tonic::Status> {
    let mut messages = vec![start_msg(call_id, agent, team)];
    for seq in 0..50 {
        for channel in 0..2 {
            messages.push(pb::ClientMessage {
                message: Some(pb::client_message::Message::Audio(pb::Audio {
                    channel,
                    seq,
                    data: vec![0xFF; 160],
                })),
            });
        }
    }
    messages.push(pb::ClientMessage {
        message: Some(pb::client_message::Message::Control(pb::CallControl {
            action: pb::call_control::Action::End as i32,
            transfer_to: String::new(),
        })),
    });
    let mut ingest = c.ingest().await.unwrap();
    let (tx, rx) = mpsc::channel(messages.len());
    for m in messages {
        tx.send(m).await.unwrap();
    }
    drop(tx);
    let mut responses = ingest.stream_call(ReceiverStream::new(rx)).await?.into_inner();
    let mut received = Vec::new();
    while let Some(m) = responses.message().await? {
        received.push(m);
    }
    Ok(received)
}

fn db_bytes(data: &std::path::Path) -> u64 {
    std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

async fn get_call(c: &Connection, call_id: &str) -> Result<pb::CallRecord, tonic::Status> {
    let mut sup = c.supervisor().await.unwrap();
    sup.get_call(pb::GetCallRequest {
        call_id: call_id.into(),
    })
    .await
    .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_team_decides_and_other_teams_calls_do_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cfg = config(&data);
    cfg.agents = vec![
        AgentEntry {
            id: "a17".into(),
            team: "billing".into(),
        },
        AgentEntry {
            id: "b22".into(),
            team: "sales".into(),
        },
    ];
    let server = Server::start(cfg).await.unwrap();
    let a17 = conn(&server, AGENT_A17);

    // The team the softphone claims is checked against the configuration.
    let denied = short_call(&a17, "wrong-team", "a17", "sales").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().starts_with("CallStart.team"), "{}", denied.message());
    assert!(
        !denied.message().contains("billing"),
        "a denial names no team: {}",
        denied.message()
    );
    // An agent token streams only its own agent.
    let denied = short_call(&a17, "other-agent", "b22", "sales").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    // The admin may stream for any listed agent, but not for one unknown.
    let denied = short_call(&conn(&server, ADMIN), "stranger", "zz9", "")
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("[[agents]]"), "{}", denied.message());

    // A 1 MB team is refused before the store sees it: the message is over
    // CallIngest's decode limit. A long one under that limit is not the
    // agent's team.
    let before = db_bytes(&data);
    let huge = "t".repeat(1 << 20);
    let refused = short_call(&a17, "huge-team", "a17", &huge).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let long = "t".repeat(100);
    let denied = short_call(&a17, "long-team", "a17", &long).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().len() < 300, "the reply does not echo the team");
    let all = conn(&server, SUP_ALL);
    for refused in ["wrong-team", "other-agent", "stranger", "huge-team"] {
        assert_eq!(
            get_call(&all, refused).await.unwrap_err().code(),
            Code::NotFound,
            "{refused}"
        );
    }
    let grown = db_bytes(&data) - before.min(db_bytes(&data));
    assert!(grown < 64 * 1024, "the store grew by {grown} bytes on refused calls");

    // No team: the configured one.
    let replies = short_call(&a17, "no-team", "a17", "").await.unwrap();
    let Some(Out::Accepted(info)) = &replies[0].message else {
        panic!("first reply {:?}", replies[0])
    };
    assert_eq!(info.team, "billing");
    assert!(matches!(replies.last().unwrap().message, Some(Out::Ended(_))));
    let record = get_call(&conn(&server, SUP_BILLING), "no-team").await.unwrap();
    assert_eq!(record.call.unwrap().team, "billing");

    // Sales cannot tell billing's call from one that never existed.
    let sales = conn(&server, SUP_SALES);
    let hidden = get_call(&sales, "no-team").await.unwrap_err();
    let missing = get_call(&sales, "never-was").await.unwrap_err();
    assert_eq!(
        (hidden.code(), hidden.message()),
        (Code::NotFound, "no call \"no-team\"")
    );
    assert_eq!(missing.code(), Code::NotFound);
    let mut sup = sales.supervisor().await.unwrap();
    let hidden = sup
        .watch_call(pb::WatchCallRequest {
            call_id: "no-team".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (hidden.code(), hidden.message()),
        (Code::NotFound, "no call \"no-team\"")
    );
    let hidden = sup
        .acknowledge_alert(pb::AcknowledgeAlertRequest {
            call_id: "no-team".into(),
            alert_id: 1,
            note: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (hidden.code(), hidden.message()),
        (Code::NotFound, "no call \"no-team\"")
    );
    // A note past 2 KiB is refused before anything is looked up or stored.
    let long = conn(&server, SUP_BILLING)
        .supervisor()
        .await
        .unwrap()
        .acknowledge_alert(pb::AcknowledgeAlertRequest {
            call_id: "no-team".into(),
            alert_id: 1,
            note: "n".repeat(2049),
        })
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
    assert!(long.message().contains("note is 2049 bytes"), "{}", long.message());
    // An agent is refused as an agent, before any call is looked up.
    let denied = get_call(&a17, "no-team").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(!denied.message().contains("billing"), "{}", denied.message());
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_agents_the_softphones_team_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let a17 = conn(&server, AGENT_A17);
    let refused = short_call(&a17, "huge-team", "a17", &"t".repeat(1 << 20))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "over the decode limit");
    let refused = short_call(&a17, "long-team", "a17", &"t".repeat(100))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("CallStart.team"), "{}", refused.message());
    let replies = short_call(&a17, "own-team", "a17", "billing").await.unwrap();
    assert!(matches!(replies.last().unwrap().message, Some(Out::Ended(_))));
    server.stop().await.unwrap();
}
