//! The store's side of privacy, on a real server with the real model: the
//! audit log (who read which call, claimed, reloaded, or was refused; for
//! admins only), a token given as its SHA-256, encryption at rest (restart
//! with the key, a wrong key refused in one line, no plaintext in the
//! files) and the retention purge (old calls gone from the files' bytes).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use callwatch_proto::pb;
use callwatch_server::config::TokenEntry;
use callwatch_server::server::Server;
use callwatch_server::store::sqlite::Sqlite;
use callwatch_server::store::CallStore;
use common::service::{self, code, conn, ADMIN, AGENT_A17, SUP_ALL, SUP_BILLING};
use predicates::prelude::*;
use tonic::Code;

const HASHED: &str = "token-sup-hashed-only";

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The store's files as bytes: the database and its WAL.
fn store_bytes(data: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(data.join("callwatch.sqlite3")).unwrap();
    bytes.extend(std::fs::read(data.join("callwatch.sqlite3-wal")).unwrap_or_default());
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn get_call(c: &callwatch_client::Connection, call_id: &str) -> Result<pb::CallRecord, tonic::Status> {
    let mut sup = c.supervisor().await.unwrap();
    let req = pb::GetCallRequest {
        call_id: call_id.into(),
    };
    sup.get_call(req).await.map(|r| r.into_inner())
}

async fn audit_log(c: &callwatch_client::Connection) -> Result<Vec<pb::AuditEvent>, tonic::Status> {
    let mut admin = c.admin().await.unwrap();
    let req = pb::ListAuditEventsRequest::default();
    admin.list_audit_events(req).await.map(|r| r.into_inner().events)
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_watches_reloads_and_refused_tokens_leave_one_row_each_for_admins_only() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = service::config(data.path());
    cfg.auth.tokens.push(TokenEntry {
        token: String::new(),
        token_sha256: Some(hex(&callwatch_server::auth::sha256(HASHED))),
        role: "supervisor:billing".into(),
        name: Some("Robin".into()),
        fast: false,
    });
    let server = Server::start(cfg).await.expect("the server starts");
    let agent = conn(&server, AGENT_A17);
    service::stream(&agent, service::call("basic_call", "audited-1", "a17", "billing")).await;

    // A supervisor known only by the hash of its token reads the call.
    let hashed = conn(&server, HASHED);
    let record = get_call(&hashed, "audited-1")
        .await
        .expect("the hashed token is accepted");
    assert!(!record.transcript.is_empty());
    let mut watch = hashed.supervisor().await.unwrap();
    let req = pb::WatchCallRequest {
        call_id: "audited-1".into(),
    };
    let mut updates = watch.watch_call(req).await.expect("watched").into_inner();
    // An ended call: its snapshot, then the stream ends.
    while updates.message().await.expect("the snapshot streams").is_some() {}
    let bad = conn(&server, "not-a-configured-token");
    assert_eq!(
        code(
            bad.supervisor()
                .await
                .unwrap()
                .list_calls(pb::ListCallsRequest::default())
                .await
        ),
        Code::Unauthenticated
    );
    let mut admin = conn(&server, ADMIN).admin().await.unwrap();
    admin
        .reload_rules(pb::ReloadRulesRequest::default())
        .await
        .expect("reloaded");

    let refused = audit_log(&conn(&server, SUP_BILLING))
        .await
        .expect_err("refused to a supervisor");
    assert_eq!(refused.code(), Code::PermissionDenied);
    // The refused token's row is written by the audit thread, soon after.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = audit_log(&conn(&server, ADMIN))
            .await
            .expect("an admin reads the audit log");
        if rows.len() >= 4 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut seen: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| (r.action.as_str(), r.actor.as_str(), r.role.as_str(), r.call_id.as_str()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("get_call", "Robin", "supervisor:billing", "audited-1"),
            ("refused_token", "", "", ""),
            ("reload_rules", "root", "admin", ""),
            ("watch_call", "Robin", "supervisor:billing", "audited-1"),
        ]
    );
    for row in &rows {
        assert!(row.peer.starts_with("127.0.0.1:"), "{row:?}");
        let fields = format!("{row:?}");
        assert!(
            !fields.contains(HASHED) && !fields.contains("not-a-configured") && !fields.contains(ADMIN),
            "a token in {fields}"
        );
    }
    assert!(rows
        .iter()
        .any(|r| r.action == "refused_token" && r.detail == "unknown token"));
    assert!(rows
        .iter()
        .any(|r| r.action == "reload_rules" && r.detail.starts_with("loaded ")));

    // `callwatch audit` prints the call's rows, oldest first.
    let server_url = format!("http://{}", server.addr);
    let out = tokio::task::spawn_blocking(move || {
        common::callwatch()
            .args([
                "audit",
                "--server",
                &server_url,
                "--token",
                ADMIN,
                "--call",
                "audited-1",
                "--json",
            ])
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let printed: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["action"].as_str().unwrap(), l["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(printed, [("get_call", "Robin"), ("watch_call", "Robin")]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_store_reopens_with_its_key_refuses_a_wrong_one_and_shows_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_file = dir.path().join("store.key");
    std::fs::write(&key_file, "a long passphrase for the store\n").unwrap();
    let mut cfg = service::config(&data);
    cfg.store.key_file = Some(key_file.clone());

    let server = Server::start(cfg.clone()).await.expect("the server starts");
    let agent = conn(&server, AGENT_A17);
    service::stream(&agent, service::call("basic_call", "secret-1", "a17", "billing")).await;
    let before = get_call(&conn(&server, SUP_ALL), "secret-1").await.unwrap();
    server.stop().await.unwrap();
    let text: Vec<&str> = before.transcript.iter().map(|t| t.text.as_str()).collect();
    // Words the store holds: none may be readable in its files.
    let words: Vec<&str> = text
        .iter()
        .flat_map(|t| t.split(|c: char| !c.is_alphanumeric()))
        .filter(|w| w.len() >= 6)
        .collect();
    assert!(words.len() >= 3, "too little transcript to look for: {text:?}");
    let bytes = store_bytes(&data);
    for word in &words {
        assert!(!contains(&bytes, word), "{word:?} in the encrypted store's files");
    }

    let server = Server::start(cfg).await.expect("restarts with the key");
    let after = get_call(&conn(&server, SUP_ALL), "secret-1").await.unwrap();
    assert_eq!(after.transcript, before.transcript);
    server.stop().await.unwrap();

    // `callwatch serve` with the wrong key: one line, exit 1, the store untouched.
    let config = dir.path().join("callwatch.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata = {data:?}\nmodel = {model:?}\n[store]\nkey_env = \"CALLWATCH_TEST_STORE_KEY\"\n[[auth.tokens]]\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n",
            model = common::q8_model(),
        ),
    )
    .unwrap();
    let untouched = store_bytes(&data);
    let config_path = config.clone();
    tokio::task::spawn_blocking(move || {
        common::callwatch()
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("CALLWATCH_TEST_STORE_KEY", "not the passphrase")
            .timeout(Duration::from_secs(60))
            .assert()
            .code(1)
            .stderr(
                predicate::str::contains("cannot be opened: wrong key or not a callwatch store")
                    .and(predicate::function(|s: &str| s.lines().count() == 1)),
            );
    })
    .await
    .unwrap();
    assert!(store_bytes(&data) == untouched, "a refused open changed the store");
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_past_retention_are_purged_from_every_table_and_the_files() {
    let data = tempfile::tempdir().unwrap();
    let day_ms = 86_400_000;
    let now = callwatch_core::time::now_unix_ms();
    {
        let store = Sqlite::open(data.path()).unwrap();
        for (id, ended, word) in [
            ("old", now - 10 * day_ms, "zanzibarquokka"),
            ("new", now - day_ms, "periwinkleotter"),
        ] {
            let info = pb::CallInfo {
                call_id: id.into(),
                agent_id: "a17".into(),
                team: "billing".into(),
                state: pb::CallState::Live as i32,
                started_unix_ms: ended - 60_000,
                ..Default::default()
            };
            store.begin_call(&info).unwrap();
            let line = pb::TranscriptRevision {
                call_id: id.into(),
                channel: 2,
                is_final: true,
                text: format!("my name is {word} and my card is on file"),
                ..Default::default()
            };
            store.add_final(&line).unwrap();
            let ended_info = pb::CallInfo {
                state: pb::CallState::Ended as i32,
                ended_unix_ms: ended,
                ..info
            };
            store.end_call(&ended_info, Some(&pb::Scorecard::default())).unwrap();
            let read = pb::AuditEvent {
                at_unix_ms: ended,
                actor: "Sam".into(),
                action: "get_call".into(),
                call_id: id.into(),
                ..Default::default()
            };
            store.audit(&read).unwrap();
        }
    }
    assert!(contains(&store_bytes(data.path()), "zanzibarquokka"));

    let mut cfg = service::config(data.path());
    cfg.privacy.retention_days = Some(7);
    let server = Server::start(cfg).await.expect("the server starts");
    let sup = conn(&server, SUP_ALL);
    // The purge runs at start, on its own thread.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_call(&sup, "old").await.is_ok() {
        assert!(Instant::now() < deadline, "the old call was not purged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get_call(&sup, "old").await.unwrap_err().code(), Code::NotFound);
    let kept = get_call(&sup, "new").await.expect("the newer call stays");
    assert!(kept.transcript[0].text.contains("periwinkleotter"));
    let audit = audit_log(&conn(&server, ADMIN)).await.unwrap();
    assert!(
        !audit.iter().any(|r| r.call_id == "old" && r.actor == "Sam"),
        "the old audit row stays: {audit:?}"
    );
    assert!(audit.iter().any(|r| r.call_id == "new" && r.actor == "Sam"));
    let bytes = store_bytes(data.path());
    assert!(
        !contains(&bytes, "zanzibarquokka"),
        "the purged call's words are in the files"
    );
    assert!(contains(&bytes, "periwinkleotter"));
    server.stop().await.unwrap();
}
