//! The contract every [`CallStore`] keeps, as tests against the trait.
//! An implementation runs them all with
//! `crate::store::contract::call_store_contract!(|| (empty_store, keep));`
//! inside its own `#[cfg(test)] mod tests`, where `keep` is whatever must
//! live as long as the store (a temporary directory, a scratch schema).

use super::{AckError, Appended, AuditQuery, CallStore, Purged};
use crate::cursor::Cursor;
use crate::filter::Meta;
use crate::pb;
use pb::alert_event::Event;

pub use super::search_contract::{
    a_replaced_or_purged_final_is_no_longer_found,
    a_rule_score_range_date_range_and_outcome_select_exactly_their_calls, pages_follow_on_without_gaps_or_repeats,
    words_match_exactly_the_calls_that_said_them_by_party,
};

/// One `#[test]` per contract case, each on a fresh store from `$make`.
macro_rules! call_store_contract {
    ($make:expr) => {
        $crate::store::contract::call_store_contract!(@cases $make;
            a_call_is_begun_once_and_a_retry_is_not_a_clash,
            the_end_of_a_call_is_kept_with_its_scorecard,
            recent_calls_are_ended_ones_newest_first_by_team,
            a_final_is_kept_once_per_utterance,
            appends_get_increasing_cursors_read_back_in_pages,
            a_retried_append_returns_the_first_cursor,
            an_alert_is_claimed_once,
            a_record_holds_transcript_and_feed_events,
            audit_events_are_kept_in_order_and_listed_by_filter_in_pages,
            a_purge_removes_old_calls_and_audit_events_and_keeps_the_rest,
            words_match_exactly_the_calls_that_said_them_by_party,
            a_rule_score_range_date_range_and_outcome_select_exactly_their_calls,
            pages_follow_on_without_gaps_or_repeats,
            a_replaced_or_purged_final_is_no_longer_found,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let make = $make;
                let (store, _keep) = make();
                $crate::store::contract::$case(&store);
            }
        )*
    };
}
pub(crate) use call_store_contract;

fn call(id: &str, team: &str, started: i64) -> pb::CallInfo {
    pb::CallInfo {
        call_id: id.into(),
        agent_id: "a17".into(),
        team: team.into(),
        state: pb::CallState::Live as i32,
        started_unix_ms: started,
        ..Default::default()
    }
}

fn ended(mut info: pb::CallInfo, ended: i64) -> pb::CallInfo {
    info.state = pb::CallState::Ended as i32;
    info.ended_unix_ms = ended;
    info.audio_s = 12.5;
    info.alerts = 1;
    info.score = Some(0.75);
    info
}

fn meta(call_id: &str, alert: Option<(i32, &str)>) -> Meta {
    Meta {
        call_id: call_id.into(),
        team: "billing".into(),
        agent_id: "a17".into(),
        severity: alert.map(|a| a.0),
        rule_id: alert.map(|a| a.1.to_owned()),
    }
}

fn event(call_id: &str, event: Event) -> pb::AlertEvent {
    pb::AlertEvent {
        call_id: call_id.into(),
        agent_id: "a17".into(),
        team: "billing".into(),
        at_unix_ms: 1_000,
        event: Some(event),
        ..Default::default()
    }
}

fn alert(call_id: &str, id: u64) -> (Meta, pb::AlertEvent) {
    let a = pb::Alert {
        id,
        call_id: call_id.into(),
        rule_id: "hold.permission".into(),
        severity: pb::Severity::Warning as i32,
        message: format!("alert {id}"),
        ..Default::default()
    };
    (
        meta(call_id, Some((a.severity, "hold.permission"))),
        event(call_id, Event::Alert(a)),
    )
}

fn ack(call_id: &str, alert_id: u64, by: &str) -> (Meta, pb::AlertEvent) {
    let a = pb::Acknowledgement {
        call_id: call_id.into(),
        alert_id,
        by: by.into(),
        at_unix_ms: 2_000,
        note: String::new(),
    };
    (
        meta(call_id, Some((pb::Severity::Warning as i32, "hold.permission"))),
        event(call_id, Event::Acknowledgement(a)),
    )
}

fn final_text(call_id: &str, channel: i32, utterance: u64, start_s: f64, text: &str) -> pb::TranscriptRevision {
    pb::TranscriptRevision {
        call_id: call_id.into(),
        channel,
        utterance_id: utterance,
        revision: 0,
        is_final: true,
        start_s,
        end_s: start_s + 1.0,
        text: text.into(),
        redacted: Vec::new(),
    }
}

pub fn a_call_is_begun_once_and_a_retry_is_not_a_clash(store: &dyn CallStore) {
    let info = call("c1", "billing", 1_000);
    assert!(store.begin_call(&info).unwrap());
    assert!(store.begin_call(&info).unwrap(), "the same write again is a retry");
    assert!(
        !store.begin_call(&call("c1", "billing", 2_000)).unwrap(),
        "another call with a used id"
    );
    let (got, card) = store.call("c1").unwrap().expect("the call is stored");
    assert_eq!(got, info);
    assert_eq!(card, None);
    assert_eq!(store.call("c2").unwrap(), None);
}

pub fn the_end_of_a_call_is_kept_with_its_scorecard(store: &dyn CallStore) {
    let info = call("c1", "billing", 1_000);
    store.begin_call(&info).unwrap();
    let card = pb::Scorecard {
        is_final: true,
        ..Default::default()
    };
    let done = ended(info, 9_000);
    store.end_call(&done, Some(&card)).unwrap();
    store.end_call(&done, Some(&card)).unwrap();
    assert_eq!(store.call("c1").unwrap(), Some((done, Some(card))));
}

pub fn recent_calls_are_ended_ones_newest_first_by_team(store: &dyn CallStore) {
    for (id, team, started) in [
        ("old", "billing", 1_000),
        ("new", "billing", 3_000),
        ("sales", "sales", 2_000),
    ] {
        let info = call(id, team, started);
        store.begin_call(&info).unwrap();
        store.end_call(&ended(info, started + 500), None).unwrap();
    }
    store.begin_call(&call("live", "billing", 4_000)).unwrap();
    let ids = |calls: Vec<pb::CallInfo>| calls.into_iter().map(|c| c.call_id).collect::<Vec<_>>();
    assert_eq!(ids(store.recent_calls(None, 10).unwrap()), ["new", "sales", "old"]);
    assert_eq!(ids(store.recent_calls(Some("billing"), 10).unwrap()), ["new", "old"]);
    assert_eq!(ids(store.recent_calls(None, 1).unwrap()), ["new"]);
}

pub fn a_final_is_kept_once_per_utterance(store: &dyn CallStore) {
    store.begin_call(&call("c1", "billing", 1_000)).unwrap();
    store.add_final(&final_text("c1", 1, 0, 0.5, "hello")).unwrap();
    store.add_final(&final_text("c1", 1, 0, 0.5, "hello there")).unwrap();
    let record = store.record("c1").unwrap().unwrap();
    let texts: Vec<_> = record.transcript.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["hello there"]);
}

pub fn appends_get_increasing_cursors_read_back_in_pages(store: &dyn CallStore) {
    assert_eq!(store.last().unwrap(), Cursor(0));
    assert_eq!(store.before_last(3).unwrap(), Cursor(0));
    let cursors: Vec<Cursor> = (1..=5)
        .map(|id| {
            let (m, e) = alert("c1", id);
            let appended = store.append(&m, &e).unwrap();
            assert!(appended.fresh);
            appended.cursor
        })
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    assert!(cursors[0] > Cursor(0));
    assert_eq!(store.last().unwrap(), cursors[4]);
    assert_eq!(store.before_last(2).unwrap(), cursors[2]);
    assert_eq!(store.before_last(5).unwrap(), Cursor(0));
    let page = store.feed_after(Cursor(0), 2).unwrap();
    let rest = store.feed_after(page[1].cursor, 10).unwrap();
    let all: Vec<_> = page.into_iter().chain(rest).collect();
    assert_eq!(all.iter().map(|e| e.cursor).collect::<Vec<_>>(), cursors);
    for (n, entry) in all.iter().enumerate() {
        let (m, mut e) = alert("c1", n as u64 + 1);
        e.cursor = entry.cursor.to_string();
        assert_eq!((&entry.meta, &entry.event), (&m, &e));
    }
    assert!(store.feed_after(cursors[4], 10).unwrap().is_empty());
}

pub fn a_retried_append_returns_the_first_cursor(store: &dyn CallStore) {
    let (m, e) = alert("c1", 7);
    let first = store.append(&m, &e).unwrap();
    assert_eq!(
        store.append(&m, &e).unwrap(),
        Appended {
            cursor: first.cursor,
            fresh: false
        }
    );
    let started = event("c1", Event::CallStarted(pb::CallStarted::default()));
    let once = store.append(&meta("c1", None), &started).unwrap();
    assert!(once.fresh);
    assert!(!store.append(&meta("c1", None), &started).unwrap().fresh);
    // The same alert id on another call is another alert.
    let (m2, e2) = alert("c2", 7);
    assert!(store.append(&m2, &e2).unwrap().fresh);
    assert_eq!(store.feed_after(Cursor(0), 10).unwrap().len(), 3);
}

pub fn an_alert_is_claimed_once(store: &dyn CallStore) {
    store.begin_call(&call("c1", "billing", 1_000)).unwrap();
    assert_eq!(
        store.check_claim("c1", 3).unwrap(),
        Err(AckError::NoSuchAlert("c1".into(), 3))
    );
    let (m, e) = alert("c1", 3);
    store.append(&m, &e).unwrap();
    assert_eq!(store.check_claim("c1", 3).unwrap(), Ok(m));
    let (am, ae) = ack("c1", 3, "Sam");
    store.append(&am, &ae).unwrap();
    assert_eq!(
        store.check_claim("c1", 3).unwrap(),
        Err(AckError::AlreadyClaimed("c1".into(), 3, "Sam".into()))
    );
    // A second claim racing the first appends nothing.
    let (km, ke) = ack("c1", 3, "Kim");
    assert!(!store.append(&km, &ke).unwrap().fresh);
    let acks = store.record("c1").unwrap().unwrap().acknowledgements;
    assert_eq!(acks.iter().map(|a| a.by.as_str()).collect::<Vec<_>>(), ["Sam"]);
}

pub fn a_record_holds_transcript_and_feed_events(store: &dyn CallStore) {
    assert_eq!(store.record("c1").unwrap(), None);
    store.begin_call(&call("c1", "billing", 1_000)).unwrap();
    store.add_final(&final_text("c1", 2, 0, 3.0, "second")).unwrap();
    store.add_final(&final_text("c1", 1, 0, 1.0, "first")).unwrap();
    store.add_final(&final_text("c1", 2, 1, 1.0, "beside")).unwrap();
    store.add_final(&final_text("other", 1, 0, 0.0, "elsewhere")).unwrap();
    for id in [1, 2] {
        let (m, e) = alert("c1", id);
        store.append(&m, &e).unwrap();
    }
    let retraction = pb::Retraction {
        call_id: "c1".into(),
        alert_id: 2,
    };
    store
        .append(
            &meta("c1", Some((pb::Severity::Warning as i32, "hold.permission"))),
            &event("c1", Event::Retraction(retraction.clone())),
        )
        .unwrap();
    let (am, ae) = ack("c1", 1, "Sam");
    store.append(&am, &ae).unwrap();
    let record = store.record("c1").unwrap().unwrap();
    assert_eq!(record.call.unwrap().call_id, "c1");
    let lines: Vec<_> = record.transcript.iter().map(|t| (t.channel, t.text.as_str())).collect();
    assert_eq!(lines, [(1, "first"), (2, "beside"), (2, "second")]);
    assert!(record.transcript.iter().all(|t| t.is_final && t.call_id == "c1"));
    assert_eq!(record.alerts.iter().map(|a| a.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(record.retractions, [retraction]);
    assert_eq!(record.acknowledgements.len(), 1);
}

fn audit_event(at: i64, actor: &str, action: &str, call_id: &str) -> pb::AuditEvent {
    pb::AuditEvent {
        seq: 0,
        at_unix_ms: at,
        actor: actor.into(),
        role: "supervisor:billing".into(),
        action: action.into(),
        call_id: call_id.into(),
        peer: "127.0.0.1:40000".into(),
        detail: String::new(),
    }
}

pub fn audit_events_are_kept_in_order_and_listed_by_filter_in_pages(store: &dyn CallStore) {
    let written = [
        audit_event(1_000, "Sam", "get_call", "c1"),
        audit_event(2_000, "Kim", "watch_call", "c2"),
        audit_event(3_000, "Sam", "acknowledge_alert", "c2"),
        audit_event(4_000, "", "refused_token", ""),
    ];
    let seqs: Vec<i64> = written.iter().map(|e| store.audit(e).unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] > 0, "{seqs:?}");
    let all = AuditQuery {
        limit: 100,
        ..Default::default()
    };
    let listed = store.audit_events(&all).unwrap();
    let expected: Vec<pb::AuditEvent> = written
        .iter()
        .zip(&seqs)
        .map(|(e, &seq)| pb::AuditEvent { seq, ..e.clone() })
        .collect();
    assert_eq!(listed, expected);
    let actions =
        |q: AuditQuery| -> Vec<String> { store.audit_events(&q).unwrap().into_iter().map(|e| e.action).collect() };
    let sam = AuditQuery {
        actor: Some("Sam".into()),
        ..all.clone()
    };
    assert_eq!(actions(sam), ["get_call", "acknowledge_alert"]);
    let c2 = AuditQuery {
        call_id: Some("c2".into()),
        ..all.clone()
    };
    assert_eq!(actions(c2), ["watch_call", "acknowledge_alert"]);
    let window = AuditQuery {
        since_unix_ms: Some(2_000),
        until_unix_ms: Some(3_000),
        ..all.clone()
    };
    assert_eq!(actions(window), ["watch_call", "acknowledge_alert"]);
    let page = AuditQuery {
        limit: 3,
        ..all.clone()
    };
    assert_eq!(actions(page), ["get_call", "watch_call", "acknowledge_alert"]);
    let next = AuditQuery {
        after_seq: seqs[2],
        ..all
    };
    assert_eq!(actions(next), ["refused_token"]);
}

pub fn a_purge_removes_old_calls_and_audit_events_and_keeps_the_rest(store: &dyn CallStore) {
    for (id, started, ended_at) in [("old", 1_000, 2_000), ("recent", 1_000, 6_000)] {
        let info = call(id, "billing", started);
        store.begin_call(&info).unwrap();
        store.add_final(&final_text(id, 1, 0, 0.5, "my card number")).unwrap();
        let (m, e) = alert(id, 1);
        store.append(&m, &e).unwrap();
        let (am, ae) = ack(id, 1, "Sam");
        store.append(&am, &ae).unwrap();
        store
            .end_call(&ended(info, ended_at), Some(&pb::Scorecard::default()))
            .unwrap();
        store.audit(&audit_event(ended_at, "Sam", "get_call", id)).unwrap();
    }
    // Live for long: stays, however old.
    store.begin_call(&call("live", "billing", 500)).unwrap();
    let purged = store.purge_before(5_000).unwrap();
    assert_eq!(
        purged,
        Purged {
            calls: 1,
            audit_events: 1
        }
    );
    assert_eq!(store.call("old").unwrap(), None);
    assert_eq!(store.record("old").unwrap(), None);
    assert!(store.call("live").unwrap().is_some());
    let recent = store.record("recent").unwrap().unwrap();
    assert_eq!(
        (
            recent.transcript.len(),
            recent.alerts.len(),
            recent.acknowledgements.len()
        ),
        (1, 1, 1)
    );
    let feed = store.feed_after(Cursor(0), 100).unwrap();
    assert!(
        feed.iter().all(|e| e.meta.call_id == "recent"),
        "the old call's alerts and claims are gone"
    );
    assert_eq!(
        store.check_claim("old", 1).unwrap(),
        Err(AckError::NoSuchAlert("old".into(), 1))
    );
    let audit = store
        .audit_events(&AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(audit.iter().map(|e| e.call_id.as_str()).collect::<Vec<_>>(), ["recent"]);
    assert_eq!(
        store.purge_before(5_000).unwrap(),
        Purged::default(),
        "nothing more to purge"
    );
}
