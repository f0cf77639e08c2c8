//! `bench search`: search latency over a store of generated calls.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use callwatch_proto::pb;
use callwatch_server::store::seed;
use callwatch_server::store::sqlite::Sqlite;
use callwatch_server::store::{CallStore, SearchQuery};

/// The searches a QA lead runs, each timed as one page of 50.
fn queries(calls: usize) -> Vec<(&'static str, SearchQuery)> {
    let span = calls as i64 * seed::SPACING_MS;
    let page = |q: SearchQuery| SearchQuery { limit: 51, ..q };
    vec![
        (
            "words",
            page(SearchQuery {
                words: Some("late fee".into()),
                ..Default::default()
            }),
        ),
        (
            "words by the agent, one team",
            page(SearchQuery {
                words: Some("brief hold".into()),
                channel: Some(pb::Channel::Agent as i32),
                team: Some("sales".into()),
                ..Default::default()
            }),
        ),
        (
            "rule fired",
            page(SearchQuery {
                rule_fired: Some("dead_air".into()),
                ..Default::default()
            }),
        ),
        (
            "score range, one agent",
            page(SearchQuery {
                min_score: Some(25.0),
                max_score: Some(50.0),
                agent_id: Some("a3".into()),
                ..Default::default()
            }),
        ),
        (
            "date range (middle tenth), dropped",
            page(SearchQuery {
                from_unix_ms: Some(seed::FIRST_START_MS + span / 2),
                to_unix_ms: Some(seed::FIRST_START_MS + span / 2 + span / 10),
                states: vec![pb::CallState::Dropped as i32],
                ..Default::default()
            }),
        ),
        (
            "words + rule + score, deep page",
            SearchQuery {
                words: Some("refund".into()),
                rule_fired: Some("talk_over".into()),
                max_score: Some(75.0),
                offset: 200,
                limit: 51,
                ..Default::default()
            },
        ),
    ]
}

pub fn search(counts: &[usize], runs: usize) -> Result<()> {
    for &n in counts {
        let dir = tempfile::tempdir().context("a temporary directory for the store")?;
        let store = Sqlite::open(dir.path())?;
        let seeding = Instant::now();
        seed::write(&store, &seed::generate(n, 1))?;
        println!("{n} calls seeded in {:.1} s", seeding.elapsed().as_secs_f64());
        let mut all = Vec::new();
        for (name, q) in queries(n) {
            let mut times: Vec<Duration> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    store.search_calls(&q).map(|rows| (t.elapsed(), rows.len()))
                })
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .map(|(t, _)| t)
                .collect();
            times.sort();
            println!(
                "  {name:<36} p50 {:>7.2} ms  p95 {:>7.2} ms",
                ms(pct(&times, 50)),
                ms(pct(&times, 95))
            );
            all.extend(times);
        }
        all.sort();
        println!(
            "  {:<36} p50 {:>7.2} ms  p95 {:>7.2} ms",
            "all searches",
            ms(pct(&all, 50)),
            ms(pct(&all, 95))
        );
    }
    Ok(())
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
