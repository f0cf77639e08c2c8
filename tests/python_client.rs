//! A client in another language talks to the server using only `proto/`:
//! a Python venv with grpcio-tools generates stubs from the proto files,
//! checks health and receives an alert from the supervisor feed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use callwatch_client::{self as client, Connection, SoftphoneCall};
use callwatch_core::audio;
use callwatch_server::config::{ServeConfig, TokenEntry};
use callwatch_server::server::Server;
use common::{fixture, q8_model};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Pinned so the stubs are generated the same way on every machine.
const PYTHON_PACKAGES: [&str; 3] = [
    "grpcio==1.85.1",
    "grpcio-tools==1.85.1",
    "grpcio-health-checking==1.85.1",
];

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed");
}

/// The venv, made once under target/ (pip reaches PyPI the first time).
fn venv() -> PathBuf {
    let venv = Path::new(ROOT).join("target/py-grpc-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join(PYTHON_PACKAGES.join(" ").replace(['=', ' '], "_"));
    if !stamp.exists() {
        run(Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv));
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(PYTHON_PACKAGES));
        std::fs::write(&stamp, "").unwrap();
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_built_from_the_proto_checks_health_and_receives_an_alert() {
    let python = venv();
    let stubs = tempfile::tempdir().unwrap();
    let protos: Vec<_> = std::fs::read_dir(Path::new(ROOT).join("proto/callwatch/v1"))
        .unwrap()
        .map(|e| Path::new("proto/callwatch/v1").join(e.unwrap().file_name()))
        .collect();
    run(Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-Iproto"])
        .arg(format!("--python_out={}", stubs.path().display()))
        .arg(format!("--grpc_python_out={}", stubs.path().display()))
        .args(&protos)
        .current_dir(ROOT));

    let data = tempfile::tempdir().unwrap();
    let mut cfg = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: data.path().to_owned(),
        model: Some(q8_model()),
        workers: 2,
        rules: Some(Path::new(ROOT).join("rules/default.toml")),
        ..ServeConfig::default()
    };
    let token = |token: &str, role: &str| TokenEntry {
        token: token.into(),
        token_sha256: None,
        role: role.into(),
        name: None,
        fast: true,
    };
    cfg.auth.tokens = vec![
        token("python-supervisor", "supervisor:*"),
        token("agent-a17-token", "agent:a17"),
    ];
    let server = Server::start(cfg).await.unwrap();

    let mut child = Command::new(&python)
        .arg(Path::new(ROOT).join("tests/python/watch_alert.py"))
        .arg(stubs.path())
        .arg(server.addr.to_string())
        .arg("python-supervisor")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let health = lines.next().unwrap().unwrap();
    assert_eq!(health, r#"{"health": "SERVING"}"#);

    let wav = fixture("calls/abuse_call.wav");
    let call = SoftphoneCall {
        call_id: "py-1".into(),
        agent_id: "a17".into(),
        team: "billing".into(),
        recording: audio::read_wav(&wav).unwrap(),
        controls: Vec::new(),
        fast: true,
        drop_at_end: false,
    };
    let agent = Connection {
        server: format!("http://{}", server.addr),
        token: "agent-a17-token".into(),
        ca: None,
        identity: None,
    };
    client::softphone(&agent, call, |_| {}).await.unwrap();

    let output: Vec<String> = tokio::task::spawn_blocking(move || lines.map(Result::unwrap).collect())
        .await
        .unwrap();
    assert!(child.wait().unwrap().success(), "{output:?}");
    let alert: serde_json::Value = serde_json::from_str(output.last().unwrap()).unwrap();
    assert_eq!(alert["rule_id"], "language.profanity_customer", "{output:?}");
    assert!(output
        .iter()
        .any(|l| l.contains(r#""event": "call_started""#) && l.contains("py-1")));
    server.stop().await.unwrap();
}
