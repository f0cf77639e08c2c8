//! `Supervisor.SearchCalls` through a real server on 127.0.0.1:0 over a
//! store seeded with generated calls: each role finds exactly the calls in
//! its scope, pages follow on, and bad requests are refused.

mod common;

use callwatch_proto::pb;
use callwatch_server::config::TokenEntry;
use callwatch_server::server::Server;
use callwatch_server::store::seed::{self, SeedCall};
use callwatch_server::store::sqlite::Sqlite;
use common::service::*;
use tonic::Code;

const AGENT_A4: &str = "token-agent-a4";

async fn seeded_server(dir: &std::path::Path) -> (Server, Vec<SeedCall>) {
    let calls = seed::generate(150, 11);
    seed::write(&Sqlite::open(dir).unwrap(), &calls).unwrap();
    let mut cfg = config(dir);
    cfg.auth.tokens.push(TokenEntry {
        token: AGENT_A4.into(),
        token_sha256: None,
        role: "agent:a4".into(),
        name: Some("Ada".into()),
        fast: false,
    });
    (Server::start(cfg).await.expect("the server starts"), calls)
}

async fn search(server: &Server, token: &str, req: pb::SearchCallsRequest) -> Result<Vec<String>, tonic::Status> {
    let mut client = conn(server, token).supervisor().await.unwrap();
    let mut ids = Vec::new();
    let mut req = pb::SearchCallsRequest { page_size: 7, ..req };
    loop {
        let page = client.search_calls(req.clone()).await?.into_inner();
        assert!(page.calls.len() <= 7);
        ids.extend(page.calls.into_iter().map(|c| c.call_id));
        if page.next_page_token.is_empty() {
            return Ok(ids);
        }
        req.page_token = page.next_page_token;
    }
}

fn expected(calls: &[SeedCall], keep: impl Fn(&SeedCall) -> bool) -> Vec<String> {
    let mut kept: Vec<_> = calls.iter().filter(|c| keep(c)).map(|c| &c.info).collect();
    kept.sort_by_key(|c| std::cmp::Reverse(c.started_unix_ms));
    kept.into_iter().map(|c| c.call_id.clone()).collect()
}

fn said(c: &SeedCall, words: &str) -> bool {
    c.finals.iter().any(|f| f.text.contains(words))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_finds_exactly_the_matching_calls_in_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let (server, calls) = seeded_server(dir.path()).await;
    let words = |w: &str| pb::SearchCallsRequest {
        words: w.into(),
        ..Default::default()
    };

    let everyone = search(&server, SUP_ALL, words("refund")).await.unwrap();
    assert!(everyone.len() > 7, "more than one page");
    assert_eq!(everyone, expected(&calls, |c| said(c, "refund")));

    let billing = search(&server, SUP_BILLING, words("refund")).await.unwrap();
    assert_eq!(
        billing,
        expected(&calls, |c| c.info.team == "billing" && said(c, "refund"))
    );
    let denied = search(
        &server,
        SUP_BILLING,
        pb::SearchCallsRequest {
            team: "sales".into(),
            ..words("refund")
        },
    )
    .await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);

    // An agent sees only its own calls, whatever it asks for.
    let own = search(&server, AGENT_A4, words("refund")).await.unwrap();
    assert!(!own.is_empty());
    assert_eq!(own, expected(&calls, |c| c.info.agent_id == "a4" && said(c, "refund")));
    let other = search(
        &server,
        AGENT_A4,
        pb::SearchCallsRequest {
            agent_id: "a5".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(other.unwrap_err().code(), Code::PermissionDenied);
    assert!(search(&server, AGENT_A17, words("refund")).await.unwrap().is_empty());

    let rule = pb::SearchCallsRequest {
        rule_id: "talk_over".into(),
        min_score: Some(25.0),
        max_score: Some(75.0),
        from_unix_ms: seed::FIRST_START_MS + 20 * seed::SPACING_MS,
        to_unix_ms: seed::FIRST_START_MS + 120 * seed::SPACING_MS,
        ..Default::default()
    };
    let in_range = |c: &SeedCall| {
        c.rules.contains(&"talk_over")
            && c.info.score.is_some_and(|s| (25.0..=75.0).contains(&s))
            && (seed::FIRST_START_MS + 20 * seed::SPACING_MS..seed::FIRST_START_MS + 120 * seed::SPACING_MS)
                .contains(&c.info.started_unix_ms)
    };
    let want = expected(&calls, in_range);
    assert!(!want.is_empty());
    assert_eq!(search(&server, ADMIN, rule).await.unwrap(), want);

    let live = pb::SearchCallsRequest {
        states: vec![pb::CallState::Live as i32],
        ..Default::default()
    };
    assert_eq!(
        search(&server, SUP_ALL, live).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let forged = pb::SearchCallsRequest {
        page_token: "x".into(),
        ..Default::default()
    };
    assert_eq!(
        search(&server, SUP_ALL, forged).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    server.stop().await.unwrap();
}
