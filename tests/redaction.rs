//! Redaction end to end, on `pii_call` (a customer reads a card number in
//! two utterances, a security code, an expiry, an SSN, a date of birth, an
//! email address and a phone number; the agent repeats the card's last
//! four): through `softphone` → `serve` (a process, logging at debug), none
//! of it reaches `watch --json`, `GetCall`, `WatchCall`, the softphone's
//! nudges, the server's log, or the bytes of the database and its WAL; the
//! markers stand where it was said. `transcribe` and `monitor` redact by
//! default; `--no-redact` shows the digits.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use callwatch_client::{self as client, Connection, SoftphoneCall};
use callwatch_core::audio;
use callwatch_proto::pb::{self, call_update::Update, server_message::Message as Out};
use common::{callwatch, fixture, q8_model, Reference};

const SUPERVISOR: &str = "redact-supervisor";
const AGENT: &str = "redact-agent-a17";
const CALL: &str = "calls/pii_call.wav";

const DIGIT_WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// What a final may not show: any digit, any digit spoken, the address.
fn final_leak(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let spoken = lower
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| DIGIT_WORDS.contains(w));
    if text.chars().any(|c| c.is_ascii_digit())
        || spoken.is_some()
        || lower.contains("smith")
        || lower.contains("ample")
    {
        Some(text.to_owned())
    } else {
        None
    }
}

/// What a partial may not show: three digits in a row (separators aside).
/// A partial's words about an email are garbled guesses ("strong, not
/// smith, and lample") that no finder can tell from other words; the final
/// decides, and finals are checked for the email's words too.
fn partial_leak(text: &str) -> Option<String> {
    let mut run = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            run += 1;
            if run >= 3 {
                return Some(text.to_owned());
            }
        } else if !" ,-.".contains(c) {
            run = 0;
        }
    }
    None
}

/// What evidence (the words of finals) may not show: what a partial may
/// not, and the email's words.
fn held_leak(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    partial_leak(text).or_else(|| (lower.contains("smith") || lower.contains("ample")).then(|| text.to_owned()))
}

/// Byte strings of what was said, as the model writes it or as it is
/// spoken, that must not be in the log or the database files.
const NEEDLES: [&str; 14] = [
    "4-5-3-9",
    "4539",
    "0343 6467",
    "6467",
    "731",
    "September 2028",
    "two one nine",
    "1985",
    "March 5",
    "smith",
    "lample",
    "example",
    "5, 5, 8",
    "5, 3, 0, 9",
];

/// `short`: also the needles of four digits or fewer (a debug log is full
/// of timestamps and frame sizes that hold such digits by chance).
fn scan(what: &str, bytes: &[u8], short: bool) {
    for needle in NEEDLES.into_iter().filter(|n| short || n.len() > 4) {
        let hit = bytes
            .windows(needle.len())
            .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()));
        if let Some(at) = hit {
            let around = &bytes[at.saturating_sub(300)..(at + 100).min(bytes.len())];
            panic!("{what} contains {needle:?}: …{}…", String::from_utf8_lossy(around));
        }
    }
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("callwatch.toml");
    std::fs::write(
        &path,
        format!(
            r#"listen = "127.0.0.1:0"
data = "{data}"
model = "{model}"
rules = "{root}/rules/default.toml"
workers = 2

[privacy]
redact = ["card", "cvv", "expiry", "ssn", "dob", "account", "routing", "pin", "phone", "email"]

[[auth.tokens]]
token = "{SUPERVISOR}"
role = "supervisor:billing"

[[auth.tokens]]
token = "{AGENT}"
role = "agent:a17"
"#,
            data = dir.join("data").display(),
            model = q8_model().display(),
            root = env!("CARGO_MANIFEST_DIR"),
        ),
    )
    .unwrap();
    path
}

/// The marker each reference utterance's final must carry (by start time).
const MARKED: [(f64, &str); 9] = [
    (5.60, "[card]"),
    (11.00, "[card]"),
    (14.80, "[card]"),
    (20.80, "[cvv]"),
    (25.50, "[expiry]"),
    (33.20, "[ssn]"),
    (41.40, "[dob]"),
    (47.70, "[email]"),
    (53.90, "[phone]"),
];

#[test]
fn nothing_said_leaves_the_service_unredacted() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let log_path = dir.path().join("serve.log");
    let mut server = Command::new(assert_cmd::cargo::cargo_bin!("callwatch"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("CALLWATCH_LOG", "debug")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = format!("http://{}", line.trim().strip_prefix("callwatch serving on ").unwrap());
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
    let conn = |token: &str| Connection {
        server: url.clone(),
        token: token.into(),
        ca: None,
        identity: None,
    };
    let (supervisor, agent) = (conn(SUPERVISOR), conn(AGENT));
    let (softphone, updates, record) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
        let updates = Arc::new(Mutex::new(Vec::new()));
        let watch_call = {
            let (supervisor, updates) = (supervisor.clone(), updates.clone());
            tokio::spawn(async move {
                accepted_rx.await.unwrap();
                let mut stream = supervisor
                    .supervisor()
                    .await
                    .unwrap()
                    .watch_call(pb::WatchCallRequest { call_id: "pii".into() })
                    .await
                    .unwrap()
                    .into_inner();
                while let Some(u) = stream.message().await.unwrap() {
                    updates.lock().unwrap().push(u.update.unwrap());
                }
            })
        };
        let wav = fixture(CALL);
        let mut accepted_tx = Some(accepted_tx);
        let mut softphone = Vec::new();
        client::softphone(
            &agent,
            SoftphoneCall {
                call_id: "pii".into(),
                agent_id: "a17".into(),
                team: "billing".into(),
                recording: audio::read_wav(&wav).unwrap(),
                controls: Vec::new(),
                fast: true,
                drop_at_end: false,
            },
            |m| {
                softphone.push(m.clone());
                if let Some(tx) = accepted_tx.take() {
                    let _ = tx.send(());
                }
            },
        )
        .await
        .unwrap()
        .expect("the call ends");
        watch_call.await.unwrap();
        let record = supervisor
            .supervisor()
            .await
            .unwrap()
            .get_call(pb::GetCallRequest { call_id: "pii".into() })
            .await
            .unwrap()
            .into_inner();
        let updates = updates.lock().unwrap().clone();
        (softphone, updates, record)
    });
    let watched = String::from_utf8(watcher.wait_with_output().unwrap().stdout).unwrap();
    // SAFETY: a plain signal to a child we started.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    assert!(server.wait().unwrap().success());

    // GetCall: every final clean, the markers where the things were said.
    assert!(record.transcript.len() >= 12, "{:?}", record.transcript);
    for t in &record.transcript {
        assert_eq!(final_leak(&t.text), None);
    }
    let reference = Reference::load(CALL);
    for (start_s, marker) in MARKED {
        let said = reference.utterances.iter().find(|u| u.start_s == start_s).unwrap();
        let heard = record
            .transcript
            .iter()
            .find(|t| (t.start_s - said.start_s).abs() < 0.5)
            .unwrap_or_else(|| panic!("no final at {start_s} s"));
        assert!(
            heard.text.contains(marker),
            "{:?} at {start_s} s: {:?}",
            said.text,
            heard.text
        );
    }
    // WatchCall: finals clean, partials hold digits, finals list their markers.
    let mut marked_finals = 0;
    for u in &updates {
        match u {
            Update::Transcript(t) if t.is_final => {
                assert_eq!(final_leak(&t.text), None);
                let chars: Vec<char> = t.text.chars().collect();
                for s in &t.redacted {
                    let marker: String = chars[s.start_char as usize..s.end_char as usize].iter().collect();
                    assert_eq!(marker, format!("[{}]", s.r#type));
                }
                marked_finals += usize::from(!t.redacted.is_empty());
            }
            Update::Transcript(t) => assert_eq!(partial_leak(&t.text), None),
            Update::Alert(a) => assert_eq!(held_leak(&a.evidence), None),
            Update::Scorecard(card) => {
                for item in card.sections.iter().flat_map(|s| &s.items) {
                    assert_eq!(held_leak(&item.evidence), None);
                }
            }
            _ => {}
        }
    }
    assert!(marked_finals >= MARKED.len(), "{marked_finals} finals with markers");
    // The softphone's nudges and the feed (watch --json).
    for m in &softphone {
        if let Some(Out::Nudge(a)) = &m.message {
            assert_eq!(held_leak(&a.evidence), None);
        }
    }
    assert!(watched.contains("scorecard"), "{watched}");
    for line in watched.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(evidence) = v["evidence"].as_str() {
            assert_eq!(held_leak(evidence), None);
        }
        for item in v["sections"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["items"].as_array().unwrap())
        {
            assert_eq!(held_leak(item["evidence"].as_str().unwrap_or_default()), None);
        }
    }
    scan("watch --json", watched.as_bytes(), false);
    // The log at debug and the database's bytes.
    scan("the server's log", &std::fs::read(&log_path).unwrap(), false);
    for file in ["callwatch.sqlite3", "callwatch.sqlite3-wal"] {
        let path = dir.path().join("data").join(file);
        if let Ok(bytes) = std::fs::read(&path) {
            scan(file, &bytes, true);
        }
    }
    assert!(dir.path().join("data/callwatch.sqlite3").exists());
}

#[test]
fn transcribe_and_monitor_redact_by_default() {
    let wav = fixture(CALL);
    let run = |args: &[&str]| {
        let out = callwatch()
            .args(args)
            .arg(&wav)
            .arg("--model")
            .arg(q8_model())
            .assert()
            .success();
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    };
    let redacted = run(&["transcribe", "--json"]);
    let lines: Vec<serde_json::Value> = redacted.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for l in &lines {
        assert_eq!(final_leak(l["text"].as_str().unwrap()), None);
    }
    let types: Vec<&str> = lines
        .iter()
        .flat_map(|l| l["redacted"].as_array().into_iter().flatten())
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    for t in ["card", "cvv", "expiry", "ssn", "dob", "email", "phone"] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
    let shown = run(&["transcribe", "--no-redact"]);
    assert!(shown.contains("6467") && shown.contains("731"), "{shown}");
    assert!(!shown.contains("[card]"), "{shown}");

    let monitored = run(&["monitor", "--fast", "--json", "--no-rules"]);
    for l in monitored.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        if v["type"] == "transcript" {
            let text = v["text"].as_str().unwrap();
            if v["final"] == true {
                assert_eq!(final_leak(text), None);
            } else {
                assert_eq!(partial_leak(text), None);
            }
        }
    }
    assert!(monitored.contains("\"redacted\":[{\"type\":\"card\""), "{monitored}");
}
