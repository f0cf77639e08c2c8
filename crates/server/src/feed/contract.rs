//! The contract every [`Feed`] keeps, as tests against the trait. An
//! implementation runs them all with
//! `crate::feed::contract::feed_contract!(make);` inside its own
//! `#[cfg(test)] mod tests`, where `make(queue)` returns the feed (over an
//! empty store, each follower buffering `queue` live events) and whatever
//! must live as long as it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{Feed, Start};
use crate::cursor::Cursor;
use crate::filter::{Filter, Meta};
use crate::pb;
use pb::alert_event::Event;

/// One `#[tokio::test]` per contract case, each on a fresh feed.
macro_rules! feed_contract {
    ($make:expr) => {
        $crate::feed::contract::feed_contract!(@cases $make;
            a_stalled_follower_gets_every_event_in_order_once,
            a_follower_sees_only_what_its_filter_matches,
            a_follower_resumes_after_its_cursor_then_follows_live,
            now_starts_with_the_next_event_and_backlog_with_the_last_ones,
            a_retried_record_is_published_once,
            following_ends_when_the_server_shuts_down,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (feed, _keep) = ($make)($crate::feed::contract::QUEUE);
                $crate::feed::contract::$case(feed).await;
            }
        )*
    };
}
pub(crate) use feed_contract;

/// Live events a follower buffers in the contract's feeds.
pub const QUEUE: usize = 16;

/// Long enough for any event to arrive on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);

type Events = mpsc::Receiver<Result<pb::AlertEvent, tonic::Status>>;

pub(crate) fn team_meta(team: &str) -> Meta {
    Meta {
        call_id: format!("{team}-call"),
        team: team.into(),
        agent_id: "a17".into(),
        severity: Some(pb::Severity::Warning as i32),
        rule_id: Some("hold.permission".into()),
    }
}

pub(crate) fn retraction(id: u64) -> pb::AlertEvent {
    pb::AlertEvent {
        event: Some(Event::Retraction(pb::Retraction {
            call_id: String::new(),
            alert_id: id,
        })),
        ..Default::default()
    }
}

/// Records a retraction of alert `id` for `team` from a blocking thread.
async fn record(feed: &Arc<dyn Feed>, team: &str, id: u64) -> Cursor {
    let (feed, meta) = (feed.clone(), team_meta(team));
    tokio::task::spawn_blocking(move || feed.record(meta, retraction(id)))
        .await
        .unwrap()
        .unwrap()
        .cursor
}

fn follow(feed: &Arc<dyn Feed>, filter: Filter, start: Start, buffer: usize) -> (Events, watch::Sender<bool>) {
    let (stop, shutdown) = watch::channel(false);
    let (out, events) = mpsc::channel(buffer);
    tokio::spawn(feed.clone().follow(filter, start, out, shutdown));
    (events, stop)
}

/// The next event's (team, alert id, cursor).
async fn next(events: &mut Events) -> (String, u64, Cursor) {
    let event = tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("no event in time")
        .expect("the stream ended")
        .expect("an error on the stream");
    let cursor = event.cursor.parse().unwrap();
    match event.event {
        Some(Event::Retraction(r)) => (event.team, r.alert_id, cursor),
        other => panic!("{other:?}"),
    }
}

/// Nothing more arrives for a moment.
async fn quiet(events: &mut Events) {
    let more = tokio::time::timeout(Duration::from_millis(200), events.recv()).await;
    assert!(more.is_err(), "unexpected {more:?}");
}

pub async fn a_stalled_follower_gets_every_event_in_order_once(feed: Arc<dyn Feed>) {
    let (mut events, _stop) = follow(&feed, Filter::default(), Start::After(Cursor(0)), 1);
    let n = QUEUE as u64 * 10;
    let recorder = feed.clone();
    // Recording never waits for the follower, which reads nothing yet.
    tokio::task::spawn_blocking(move || {
        for id in 0..n {
            recorder.record(team_meta("billing"), retraction(id)).unwrap();
        }
    })
    .await
    .unwrap();
    let mut last = Cursor(0);
    for id in 0..n {
        let (_, got, cursor) = next(&mut events).await;
        assert_eq!(got, id);
        assert!(cursor > last);
        last = cursor;
    }
    quiet(&mut events).await;
}

pub async fn a_follower_sees_only_what_its_filter_matches(feed: Arc<dyn Feed>) {
    let billing = Filter {
        team: Some("billing".into()),
        ..Filter::default()
    };
    let (mut events, _stop) = follow(&feed, billing, Start::After(Cursor(0)), QUEUE);
    for id in 0..6 {
        record(&feed, if id % 2 == 0 { "billing" } else { "sales" }, id).await;
    }
    for id in [0, 2, 4] {
        let (team, got, _) = next(&mut events).await;
        assert_eq!((team.as_str(), got), ("billing", id));
    }
    quiet(&mut events).await;
}

pub async fn a_follower_resumes_after_its_cursor_then_follows_live(feed: Arc<dyn Feed>) {
    let mut cursors = Vec::new();
    for id in 0..3 {
        cursors.push(record(&feed, "billing", id).await);
    }
    let (mut events, _stop) = follow(&feed, Filter::default(), Start::After(cursors[1]), QUEUE);
    assert_eq!(next(&mut events).await, ("billing".into(), 2, cursors[2]));
    let live = record(&feed, "billing", 3).await;
    assert_eq!(next(&mut events).await, ("billing".into(), 3, live));
    quiet(&mut events).await;
}

pub async fn now_starts_with_the_next_event_and_backlog_with_the_last_ones(feed: Arc<dyn Feed>) {
    for id in 0..3 {
        record(&feed, "billing", id).await;
    }
    let (mut now, _stop_now) = follow(&feed, Filter::default(), Start::Now, QUEUE);
    let (mut backlog, _stop_backlog) = follow(&feed, Filter::default(), Start::Backlog(2), QUEUE);
    // The followers start in their own tasks: give them a moment to
    // take their start before the next event is recorded.
    tokio::time::sleep(Duration::from_millis(200)).await;
    record(&feed, "billing", 3).await;
    assert_eq!(next(&mut now).await.1, 3);
    quiet(&mut now).await;
    for id in [1, 2, 3] {
        assert_eq!(next(&mut backlog).await.1, id);
    }
    quiet(&mut backlog).await;
}

pub async fn a_retried_record_is_published_once(feed: Arc<dyn Feed>) {
    let (mut events, _stop) = follow(&feed, Filter::default(), Start::After(Cursor(0)), QUEUE);
    let first = record(&feed, "billing", 7).await;
    assert_eq!(record(&feed, "billing", 7).await, first);
    let other = record(&feed, "billing", 8).await;
    assert_eq!(next(&mut events).await, ("billing".into(), 7, first));
    assert_eq!(next(&mut events).await, ("billing".into(), 8, other));
    quiet(&mut events).await;
}

pub async fn following_ends_when_the_server_shuts_down(feed: Arc<dyn Feed>) {
    let (mut events, stop) = follow(&feed, Filter::default(), Start::Now, QUEUE);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(true).unwrap();
    let end = tokio::time::timeout(PATIENCE, events.recv()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}
