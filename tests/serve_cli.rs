//! `callwatch serve`, `softphone` and `watch` as processes, as an operator
//! runs them: configuration errors, the supervisor feed printing what
//! `monitor` prints, a graceful shutdown on SIGTERM mid-call, and a server
//! started outside the repository.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callwatch_client::Connection;
use callwatch_proto::pb;
use common::{callwatch, fixture, q8_model};
use predicates::prelude::*;

const SUPERVISOR: &str = "cli-supervisor";
const AGENT: &str = "cli-agent-a17";

/// Writes a config; returns it and the Prometheus address it sets.
fn write_config(dir: &Path) -> (std::path::PathBuf, String) {
    let path = dir.join("callwatch.toml");
    // A port that was free a moment ago, for the metrics listener.
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    std::fs::write(
        &path,
        format!(
            r#"listen = "127.0.0.1:0"
metrics_listen = "{metrics}"
data = "{data}"
model = "{model}"
rules = "{root}/rules/default.toml"
workers = 2
shutdown_grace_s = 20

[[auth.tokens]]
token = "{SUPERVISOR}"
role = "supervisor:billing"

[[auth.tokens]]
token = "{AGENT}"
role = "agent:a17"
fast = true
"#,
            data = dir.join("data").display(),
            model = q8_model().display(),
            root = env!("CARGO_MANIFEST_DIR"),
        ),
    )
    .unwrap();
    (path, metrics)
}

/// A plain HTTP GET, as Prometheus scrapes.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

/// Starts `callwatch serve` and reads the address it bound.
fn serve(config: &Path) -> (Child, String) {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin!("callwatch"));
    command.args(["serve", "--config"]).arg(config);
    serve_with(command)
}

/// Starts `command` (a `callwatch serve`) and reads the address it bound.
fn serve_with(mut command: Command) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("callwatch serving on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, format!("http://{addr}"))
}

fn terminate(child: &Child) {
    // SAFETY: a plain signal to a child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

#[test]
fn bad_configuration_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("callwatch.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\n").unwrap();
    callwatch()
        .args(["serve", "--config"])
        .arg(&path)
        .assert()
        .failure()
        .stderr(predicate::str::contains("no [[auth.tokens]]"));
    std::fs::write(&path, "[[auth.tokens]]\ntoken = \"long-enough\"\nrole = \"boss\"\n").unwrap();
    callwatch()
        .args(["serve", "--config"])
        .arg(&path)
        .assert()
        .failure()
        .stderr(predicate::str::contains("auth.tokens[0]").and(predicate::str::contains("unknown role \"boss\"")));
    // The environment overrides the file, and is checked too.
    std::fs::write(&path, "[[auth.tokens]]\ntoken = \"long-enough\"\nrole = \"admin\"\n").unwrap();
    callwatch()
        .args(["serve", "--config"])
        .arg(&path)
        .env("CALLWATCH_LIMITS__MAX_CALLS", "lots")
        // A server that wrongly starts must not hang the suite.
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(predicate::str::contains("LIMITS.MAX_CALLS").and(predicate::str::contains("CALLWATCH_")));
    callwatch()
        .args(["serve", "--config", "/no/such/callwatch.toml"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("/no/such/callwatch.toml: no such config file"));
}

#[test]
fn watch_json_prints_what_monitor_prints() {
    let dir = tempfile::tempdir().unwrap();
    let (config, metrics) = write_config(dir.path());
    let (mut server, url) = serve(&config);
    let watcher = Command::new(assert_cmd::cargo::cargo_bin!("callwatch"))
        .args([
            "watch",
            "--json",
            "--resume-after",
            "c0",
            "--exit-after-calls",
            "1",
            "--server",
            &url,
        ])
        .args(["--token", SUPERVISOR])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let wav = fixture("calls/hold_violation_call.wav");
    let softphone = callwatch()
        .arg("softphone")
        .arg(&wav)
        .args([
            "--fast",
            "--json",
            "--call-id",
            "hold_violation_call",
            "--agent",
            "a17",
            "--team",
            "billing",
        ])
        .args(["--server", &url, "--token", AGENT])
        .assert()
        .success();
    let nudges = String::from_utf8(softphone.get_output().stdout.clone()).unwrap();
    let watched = String::from_utf8(watcher.wait_with_output().unwrap().stdout).unwrap();
    let scraped = http_get(&metrics, "/metrics");
    for metric in [
        "callwatch_rpc_requests_total{method=\"/callwatch.v1.CallIngest/StreamCall\",code=\"0\"} 1",
        "callwatch_inference_seconds",
        "callwatch_feed_subscribers",
    ] {
        assert!(scraped.contains(metric), "no {metric} in\n{scraped}");
    }
    terminate(&server);
    assert!(server.wait().unwrap().success());

    let monitor = callwatch()
        .arg("monitor")
        .arg(&wav)
        .args(["--fast", "--json", "--model"])
        .arg(q8_model())
        .arg("--events")
        .arg(wav.with_extension("events.jsonl"))
        .assert()
        .success();
    let monitored = String::from_utf8(monitor.get_output().stdout.clone()).unwrap();
    let of_type = |text: &str, kinds: &[&str]| -> Vec<String> {
        text.lines()
            .filter(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                kinds.contains(&v["type"].as_str().unwrap_or_default())
            })
            .map(str::to_owned)
            .collect()
    };
    let wanted = ["alert", "retract", "scorecard"];
    assert_eq!(of_type(&watched, &wanted), of_type(&monitored, &wanted));
    assert_eq!(of_type(&watched, &["alert"]).len(), 2);
    // The agent's nudges are the same alerts.
    assert_eq!(of_type(&nudges, &["alert"]), of_type(&monitored, &["alert"]));
}

#[test]
fn sigterm_finishes_the_call_in_progress_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_config(dir.path());
    let (mut server, url) = serve(&config);
    let softphone = Command::new(assert_cmd::cargo::cargo_bin!("callwatch"))
        .arg("softphone")
        .arg(fixture("calls/hold_violation_call.wav"))
        .args(["--call-id", "cut-short", "--agent", "a17", "--team", "billing"])
        .args(["--server", &url, "--token", AGENT])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Real time: the greeting (0.3–4.5 s) is over by now, the call is not.
    std::thread::sleep(Duration::from_secs(7));
    let stopping = Instant::now();
    terminate(&server);
    assert!(server.wait().unwrap().success());
    assert!(stopping.elapsed() < Duration::from_secs(20));
    let softphone = softphone.wait_with_output().unwrap();
    assert!(!softphone.status.success());
    let err = String::from_utf8_lossy(&softphone.stderr);
    assert!(err.contains("Unavailable: the server is shutting down"), "{err}");

    let (mut server, url) = serve(&config);
    let record = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let conn = Connection {
            server: url,
            token: SUPERVISOR.into(),
            ca: None,
            identity: None,
        };
        let mut sup = conn.supervisor().await.unwrap();
        sup.get_call(pb::GetCallRequest {
            call_id: "cut-short".into(),
        })
        .await
        .unwrap()
        .into_inner()
    });
    terminate(&server);
    server.wait().unwrap();
    let call = record.call.unwrap();
    assert_eq!(call.state, pb::CallState::Aborted as i32);
    assert!((5.0..12.0).contains(&call.audio_s), "{} s of audio", call.audio_s);
    let greeting = &record.transcript.first().expect("the greeting was kept").text;
    assert!(greeting.contains("Thank you for calling"), "{greeting}");
    assert!(record.scorecard.unwrap().is_final);
}

/// An installed binary: started in `/` with a config that names no rule
/// file (the built-in rulebook) and no model (CALLWATCH_MODEL names it),
/// the store where `--data` says.
#[test]
fn serve_runs_from_any_directory_with_the_built_in_rules() {
    const ADMIN: &str = "cli-admin-token";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:0"
workers = 2

[[auth.tokens]]
token = "{SUPERVISOR}"
role = "supervisor:billing"

[[auth.tokens]]
token = "{AGENT}"
role = "agent:a17"
fast = true

[[auth.tokens]]
token = "{ADMIN}"
role = "admin"
"#
        ),
    )
    .unwrap();
    let data = dir.path().join("store");
    let mut command = Command::new(assert_cmd::cargo::cargo_bin!("callwatch"));
    command
        .current_dir("/")
        .env("CALLWATCH_MODEL", q8_model())
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(&data);
    let (mut server, url) = serve_with(command);
    callwatch()
        .current_dir("/")
        .arg("softphone")
        .arg(fixture("calls/hold_violation_call.wav"))
        .args([
            "--fast",
            "--call-id",
            "from-root",
            "--agent",
            "a17",
            "--team",
            "billing",
        ])
        .args(["--server", &url, "--token", AGENT])
        .assert()
        .success();
    let (record, rules, reloaded) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let conn = |token: &str| Connection {
            server: url.clone(),
            token: token.into(),
            ca: None,
            identity: None,
        };
        let record = conn(SUPERVISOR)
            .supervisor()
            .await
            .unwrap()
            .get_call(pb::GetCallRequest {
                call_id: "from-root".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut admin = conn(ADMIN).admin().await.unwrap();
        let rules = admin.get_rules(pb::GetRulesRequest {}).await.unwrap().into_inner();
        // No path and no file configured: the built-in book again.
        let reloaded = admin
            .reload_rules(pb::ReloadRulesRequest { path: String::new() })
            .await
            .unwrap()
            .into_inner();
        (record, rules, reloaded)
    });
    terminate(&server);
    assert!(server.wait().unwrap().success());
    assert!(
        data.join("callwatch.sqlite3").is_file(),
        "the store is where --data says"
    );
    assert_eq!(record.call.unwrap().state, pb::CallState::Ended as i32);
    let fired: Vec<_> = record.alerts.iter().map(|a| a.rule_id.as_str()).collect();
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert_eq!(rules.path, "built-in rules/default.toml");
    assert_eq!(
        rules.text,
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml")).unwrap()
    );
    assert_eq!((reloaded.path, reloaded.rule_ids), (rules.path, rules.rule_ids));
}

/// Without --model or CALLWATCH_MODEL, the model is looked for in the data
/// directory, then ./models; when it is nowhere, the error says where it
/// looked and how to fetch it.
#[test]
fn the_model_is_found_in_the_data_directory_or_its_absence_explained() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("callwatch.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:0\"\n[[auth.tokens]]\ntoken = \"{AGENT}\"\nrole = \"agent:a17\"\nfast = true\n"),
    )
    .unwrap();
    let from_root = || {
        let mut cmd = callwatch();
        cmd.current_dir("/")
            .env("HOME", home.path())
            .env_remove("XDG_DATA_HOME")
            .env_remove("CALLWATCH_MODEL");
        cmd
    };
    let models = home.path().join(".local/share/callwatch/models");
    let expected = models.join("ggml-tiny.en-q8_0.bin");
    from_root()
        .args(["serve", "--config"])
        .arg(&config)
        .timeout(Duration::from_secs(30))
        .assert()
        .failure()
        .stderr(
            predicate::str::contains(expected.display().to_string())
                .and(predicate::str::contains("models/ggml-tiny.en-q8_0.bin"))
                .and(predicate::str::contains(format!(
                    "callwatch model fetch --dir {}",
                    models.display()
                ))),
        );
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(q8_model(), &expected).unwrap();
    from_root()
        .args(["model", "locate"])
        .assert()
        .success()
        .stdout(format!("{}\n", expected.display()));
}
