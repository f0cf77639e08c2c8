//! The gRPC service end to end: a real server on 127.0.0.1:0 with the real
//! model, real clients over loopback, a real store on disk. Streamed calls,
//! dashboards, restarts and roles; `service_edges.rs` has bad input, dropped
//! calls, health, reflection and TLS.

mod common;

use std::path::Path;
use std::time::Duration;

use callwatch_client::{self as client};
use callwatch_core::text::word_error_rate;
use callwatch_proto::pb::{self, server_message::Message as Out};
use callwatch_server::server::Server;
use common::service::*;
use common::Reference;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_call_nudges_the_agent_alerts_supervisors_and_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path()).await;
    let supervisor = conn(&server, SUP_BILLING);
    let feed = watch(&supervisor, "c0", 1);

    let (received, ended) = stream(
        &conn(&server, AGENT_A17),
        call("hold_violation_call", "hv-1", "a17", "billing"),
    )
    .await;

    // The agent: accepted, then its nudges in order, in call time, then the end.
    assert!(matches!(
        received.first().and_then(|m| m.message.as_ref()),
        Some(Out::Accepted(_))
    ));
    let agent: Vec<_> = nudges(&received)
        .iter()
        .map(|a| (a.rule_id.clone(), a.start_s))
        .collect();
    assert_eq!(agent.len(), 2, "{agent:?}");
    for ((rule, t), (want_rule, want_t)) in agent
        .iter()
        .zip([("hold.permission", 18.7), ("hold.thank_on_return", 23.0)])
    {
        assert_eq!(rule, want_rule);
        assert!((t - want_t).abs() <= 1.0, "{rule} at {t} s, expected near {want_t} s");
    }
    let ended = ended.expect("the call ended cleanly");
    assert_eq!(ended.call.as_ref().unwrap().state, pb::CallState::Ended as i32);

    // The supervisor: the same alerts, between the call's start and end, in order.
    let events = feed.await.unwrap();
    let kinds: Vec<_> = events.iter().map(|(e, _)| describe(e)).collect();
    assert_eq!(
        kinds,
        [
            "call_started",
            "alert hold.permission",
            "alert hold.thank_on_return",
            "call_ended"
        ]
    );
    assert!(events.windows(2).all(|w| cursor(&w[0].0) < cursor(&w[1].0)));
    assert!(events
        .iter()
        .all(|(e, _)| e.call_id == "hv-1" && e.team == "billing" && e.agent_id == "a17"));
    assert!(events.windows(2).all(|w| w[0].0.at_unix_ms <= w[1].0.at_unix_ms));

    // The store: transcript and scorecard.
    let mut sup = supervisor.supervisor().await.unwrap();
    let record = sup
        .get_call(pb::GetCallRequest { call_id: "hv-1".into() })
        .await
        .unwrap()
        .into_inner();
    // The stored transcript is the call's (accuracy itself is tested in
    // tests/live.rs; espeak's voices cost tiny.en some words here).
    let reference = Reference::load("calls/hold_violation_call.wav");
    let said = format!("{} {}", reference.text_of("agent"), reference.text_of("customer"));
    let heard = |channel: pb::Channel| {
        record
            .transcript
            .iter()
            .filter(|t| t.channel == channel as i32)
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let heard = format!("{} {}", heard(pb::Channel::Agent), heard(pb::Channel::Customer));
    let wer = word_error_rate(&said, &heard);
    assert!(wer <= 0.25, "WER {wer:.2}: {heard}");
    let card = record.scorecard.unwrap();
    assert!(card.is_final);
    let status = |rule: &str| {
        card.sections
            .iter()
            .flat_map(|s| &s.items)
            .find(|i| i.rule_id == rule)
            .map(|i| i.status.clone())
    };
    assert_eq!(status("hold.permission").as_deref(), Some("fail"));
    assert_eq!(status("closing.further_assistance").as_deref(), Some("pass"));
    assert_eq!(record.alerts.len(), 2);

    // Restart: a dashboard resuming after the first alert gets the rest,
    // from the store, then new events live, nothing repeated.
    server.stop().await.unwrap();
    let server = start(data.path()).await;
    let supervisor = conn(&server, SUP_BILLING);
    let first_alert = &events[1].0.cursor;
    let resumed = watch(&supervisor, first_alert, 2);
    stream(
        &conn(&server, AGENT_A17),
        call("abuse_call", "abuse-1", "a17", "billing"),
    )
    .await;
    let resumed: Vec<_> = resumed.await.unwrap().into_iter().map(|(e, _)| e).collect();
    let kinds: Vec<_> = resumed.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "alert hold.thank_on_return",
            "call_ended",
            "call_started",
            "alert language.profanity_customer",
            "alert language.profanity_customer",
            "call_ended"
        ]
    );
    assert_eq!(resumed[0].cursor, events[2].0.cursor);
    assert!(resumed.windows(2).all(|w| cursor(&w[0]) < cursor(&w[1])));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_dashboard_delays_no_one_and_catches_up_from_the_store() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.limits.subscriber_queue = 2;
    let server = Server::start(cfg).await.unwrap();
    let supervisor = conn(&server, SUP_BILLING);

    // A dashboard that subscribes and then reads nothing, over a connection
    // with a tiny HTTP/2 window so that the server's queues fill.
    let channel = tonic::transport::Endpoint::from_shared(supervisor.server.clone())
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .initial_connection_window_size(Some(1024))
        .connect()
        .await
        .unwrap();
    let (_, bearer) = supervisor.channel().await.unwrap();
    let mut stalled_client = pb::supervisor_client::SupervisorClient::with_interceptor(channel, bearer);
    let mut stalled = stalled_client
        .watch_alerts(pb::WatchAlertsRequest {
            resume_after: "c0".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    let reader = watch(&supervisor, "c0", 3);
    let agent = conn(&server, AGENT_A17);
    for (n, name) in ["abuse_call", "jargon_call", "opening_closing_call"].iter().enumerate() {
        stream(&agent, call(name, &format!("stall-{n}"), "a17", "billing")).await;
    }
    let live = reader.await.unwrap();
    assert!(live.len() >= 14, "{} events", live.len());
    // The reading dashboard got every event as it was recorded.
    for (event, arrived) in &live {
        let recorded_ms = event.at_unix_ms;
        let lag_ms = callwatch_core::time::now_unix_ms() - recorded_ms - arrived.elapsed().as_millis() as i64;
        assert!(
            lag_ms < 1000,
            "{} arrived {lag_ms} ms after it was recorded",
            describe(event)
        );
    }
    assert!(server.feed().lagged() >= 1, "the stalled dashboard was never cut off");

    // The stalled one now reads: everything, in order, exactly once.
    let mut caught_up = Vec::new();
    while caught_up.len() < live.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), stalled.message())
            .await
            .expect("the stalled dashboard catches up")
            .unwrap()
            .unwrap();
        caught_up.push(event.cursor);
    }
    let expected: Vec<_> = live.iter().map(|(e, _)| e.cursor.clone()).collect();
    assert_eq!(caught_up, expected);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_reaches_only_its_scope() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path()).await;

    // No token, an unknown token.
    let mut anonymous = pb::supervisor_client::SupervisorClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    assert_eq!(
        code(anonymous.list_calls(pb::ListCallsRequest::default()).await),
        Code::Unauthenticated
    );
    let mut stranger = conn(&server, "not-a-token").supervisor().await.unwrap();
    assert_eq!(
        code(stranger.list_calls(pb::ListCallsRequest::default()).await),
        Code::Unauthenticated
    );

    // Agents stream only their own calls and cannot watch.
    let err = client::softphone(
        &conn(&server, AGENT_A17),
        call("silence_call", "x-1", "b22", "sales"),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("PermissionDenied"), "{err:#}");
    let mut agent = conn(&server, AGENT_A17).supervisor().await.unwrap();
    assert_eq!(
        code(agent.list_calls(pb::ListCallsRequest::default()).await),
        Code::PermissionDenied
    );

    // One call per team.
    stream(
        &conn(&server, AGENT_A17),
        call("silence_call", "bill-1", "a17", "billing"),
    )
    .await;
    stream(
        &conn(&server, AGENT_B22),
        call("talk_over_call", "sale-1", "b22", "sales"),
    )
    .await;

    let mut billing = conn(&server, SUP_BILLING).supervisor().await.unwrap();
    let listed = billing
        .list_calls(pb::ListCallsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.calls.iter().map(|c| c.call_id.as_str()).collect::<Vec<_>>(),
        ["bill-1"]
    );
    let listed = conn(&server, SUP_ALL)
        .supervisor()
        .await
        .unwrap()
        .list_calls(pb::ListCallsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.calls.len(), 2);
    assert_eq!(
        code(
            billing
                .list_calls(pb::ListCallsRequest {
                    team: "sales".into(),
                    recent: 0
                })
                .await
        ),
        Code::PermissionDenied
    );
    // Another team's call is answered as a call that does not exist.
    let hidden = billing
        .get_call(pb::GetCallRequest {
            call_id: "sale-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (hidden.code(), hidden.message()),
        (Code::NotFound, "no call \"sale-1\"")
    );
    let denied = billing
        .watch_alerts(pb::WatchAlertsRequest {
            team: "sales".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Claims: only within the team, and only once.
    let sales_alert = conn(&server, SUP_SALES)
        .supervisor()
        .await
        .unwrap()
        .get_call(pb::GetCallRequest {
            call_id: "sale-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .alerts[0]
        .id;
    let ack = |call_id: &str, alert_id| pb::AcknowledgeAlertRequest {
        call_id: call_id.into(),
        alert_id,
        note: "on it".into(),
    };
    let hidden = billing.acknowledge_alert(ack("sale-1", sales_alert)).await.unwrap_err();
    assert_eq!(
        (hidden.code(), hidden.message()),
        (Code::NotFound, "no call \"sale-1\"")
    );
    let billing_alert = billing
        .get_call(pb::GetCallRequest {
            call_id: "bill-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .alerts[0]
        .id;
    let claimed = billing
        .acknowledge_alert(ack("bill-1", billing_alert))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(claimed.by, "Sam");
    let mut kim = conn(&server, SUP_BILLING_2).supervisor().await.unwrap();
    let taken = kim.acknowledge_alert(ack("bill-1", billing_alert)).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert!(taken.message().contains("claimed by Sam"), "{}", taken.message());
    assert_eq!(
        kim.acknowledge_alert(ack("bill-1", 999)).await.unwrap_err().code(),
        Code::NotFound
    );
    // Others see who claimed it, in the feed and in the call's record.
    let record = kim
        .get_call(pb::GetCallRequest {
            call_id: "bill-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(record.acknowledgements.len(), 1);
    assert_eq!(record.acknowledgements[0].by, "Sam");

    // Rules: only the admin; a broken file is refused and the rules stay.
    let reload = |path: &Path| pb::ReloadRulesRequest {
        path: path.display().to_string(),
    };
    let mut sup_admin = conn(&server, SUP_ALL).admin().await.unwrap();
    assert_eq!(
        sup_admin.get_rules(pb::GetRulesRequest {}).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let mut admin = conn(&server, ADMIN).admin().await.unwrap();
    let before = admin.get_rules(pb::GetRulesRequest {}).await.unwrap().into_inner();
    assert!(before.rule_ids.iter().any(|r| r == "call.dropped"));
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "version = 1\n\n[[rule]]\nid = \"x\"\nkind = \"nonsense\"\n").unwrap();
    let refused = admin.reload_rules(reload(&broken)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("broken.toml:3"), "{}", refused.message());
    let after = admin.get_rules(pb::GetRulesRequest {}).await.unwrap().into_inner();
    assert_eq!(after.rule_ids, before.rule_ids);

    let small = dir.path().join("small.toml");
    let default = std::fs::read_to_string(&before.path).unwrap();
    let dropped_rule = &default[default.find("[[rule]]\nid = \"call.dropped\"").unwrap()..];
    std::fs::write(&small, format!("version = 1\n\n{dropped_rule}")).unwrap();
    let reloaded = admin.reload_rules(reload(&small)).await.unwrap().into_inner();
    assert_eq!(reloaded.rule_ids, ["call.dropped"]);
    // New calls get the new rules.
    let (_, ended) = stream(
        &conn(&server, AGENT_A17),
        call("silence_call", "bill-2", "a17", "billing"),
    )
    .await;
    let card = ended.unwrap().scorecard.unwrap();
    assert_eq!(card.sections.iter().map(|s| s.items.len()).sum::<usize>(), 1);
    server.stop().await.unwrap();
}
