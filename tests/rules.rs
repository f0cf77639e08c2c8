//! The default rulebook on scenario calls: real audio through the live
//! pipeline and the real model, then the rule engine. Each scenario's
//! expected alerts and scorecard live beside it in `<call>.expected.json`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use callwatch_asr::transcribe::pool::{Pool, PoolConfig};
use callwatch_asr::transcribe::Model;
use callwatch_core::alerts::RuleOutput;
use callwatch_core::audio;
use callwatch_core::capture::replay::{Pace, Replay};
use callwatch_core::pipeline::{Call, CallConfig};
use callwatch_core::rules::config::Rulebook;
use callwatch_core::rules::{sidecar, CallRules};
use common::{callwatch, fixture, q8_model};
use predicates::prelude::*;

#[derive(serde::Deserialize)]
struct Expected {
    alerts: Vec<ExpectedAlert>,
    scorecard: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct ExpectedAlert {
    rule_id: String,
    start_s: f64,
}

fn default_rules() -> Arc<Rulebook> {
    Arc::new(Rulebook::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml")).unwrap())
}

#[test]
fn scenario_calls_raise_exactly_their_alerts() {
    let dir = fixture("calls");
    let mut scenarios: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".expected.json").map(str::to_owned))
        .collect();
    scenarios.sort();
    assert!(!scenarios.is_empty(), "no scenario calls in {}", dir.display());
    let pool = Arc::new(Pool::new(&Model::load(&q8_model()).unwrap(), PoolConfig::default()).unwrap());
    let rules = default_rules();
    let mut failures = Vec::new();
    for name in &scenarios {
        let expected: Expected =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.expected.json"))).unwrap()).unwrap();
        let wav = dir.join(format!("{name}.wav"));
        let controls = sidecar::beside(&wav).unwrap();
        let recording = audio::read_wav(&wav).unwrap();
        let config = CallConfig::new(name);
        let mut engine = CallRules::new(rules.clone(), name, config.vad.hangover, controls);
        let call = Call::start(Box::new(Replay::new(recording, Pace::Fast)), pool.clone(), config).unwrap();
        let mut outputs = Vec::new();
        for event in call.events.iter() {
            outputs.extend(engine.feed(&event));
        }
        let report = call.join().unwrap();
        outputs.extend(engine.finish(report.audio_s));

        // Alerts still standing after retractions.
        let retracted: Vec<u64> = outputs
            .iter()
            .filter_map(|o| match o {
                RuleOutput::Retract { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        let mut got: Vec<(String, f64)> = outputs
            .iter()
            .filter_map(|o| match o {
                RuleOutput::Alert(a) if !retracted.contains(&a.id) => Some((a.rule_id.to_string(), a.start_s)),
                _ => None,
            })
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut want: Vec<(String, f64)> = expected.alerts.iter().map(|a| (a.rule_id.clone(), a.start_s)).collect();
        want.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let same = got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|(g, w)| g.0 == w.0 && (g.1 - w.1).abs() <= 1.0);
        if !same {
            failures.push(format!("{name}: alerts {got:?}, expected {want:?}"));
        }

        let card = engine.scorecard();
        assert!(card.is_final);
        for section in &card.sections {
            for item in &section.items {
                let status = item.status.name();
                match expected.scorecard.get(item.rule_id.as_ref()) {
                    Some(want) if want == status => {}
                    want => failures.push(format!(
                        "{name}: scorecard {} is {status}, expected {want:?}",
                        item.rule_id
                    )),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rules_check_accepts_the_default_and_names_errors() {
    callwatch()
        .args(["rules", "check"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml"))
        .assert()
        .success()
        .stdout(predicate::str::contains("all valid"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\n\n[[rule]]\nid = \"x\"\nkind = \"forbidden_phrase\"\nsection = \"S\"\nitem = \"i\"\nseverity = \"loud\"\naudience = [\"agent\"]\nmessage = \"m\"\nparty = \"agent\"\nphrases = [\"yep\"]\n",
    )
    .unwrap();
    callwatch()
        .args(["rules", "check"])
        .arg(&bad)
        .assert()
        .failure()
        .stderr(predicate::str::contains("bad.toml:8:").and(predicate::str::contains("loud")));
}

/// A bad rule file given to monitor is refused before any audio is read.
#[test]
fn monitor_refuses_a_broken_rulebook() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("r.toml");
    std::fs::write(&bad, "version = 1\n[[rule]]\nid = \"x\"\n").unwrap();
    callwatch()
        .args(["monitor", "--fast", "--rules"])
        .arg(&bad)
        .arg(fixture("jfk.wav"))
        .assert()
        .failure()
        .stderr(predicate::str::starts_with("error: ").and(predicate::str::contains("r.toml:2:")));
}

/// `rules test` replays a call with its sidecar events and prints what fired.
#[test]
fn rules_test_reports_what_would_fire() {
    let out = callwatch()
        .args(["rules", "test", "--json"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.toml"))
        .arg(fixture("calls/hold_violation_call.wav"))
        .assert()
        .success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let fired: Vec<&str> = lines
        .iter()
        .filter(|v| v["type"] == "alert")
        .map(|v| v["rule_id"].as_str().unwrap())
        .collect();
    assert_eq!(fired, ["hold.permission", "hold.thank_on_return"], "{stdout}");
    let card = lines
        .iter()
        .find(|v| v["type"] == "scorecard")
        .expect("a scorecard line");
    assert_eq!(card["final"], true);
    for alert in lines.iter().filter(|v| v["type"] == "alert") {
        for key in [
            "id", "severity", "audience", "party", "start_s", "end_s", "evidence", "message",
        ] {
            assert!(!alert[key].is_null(), "{key} missing in {alert}");
        }
    }
}
