//! `callwatch audit`: reads the server's audit log (admin token), every
//! page of it.

use anyhow::Result;

use crate::{status_error, Connection};
use callwatch_proto::pb;

/// Every audit event matching `filter` (its `after_seq` and `limit` are the
/// paging's), oldest first.
pub async fn audit_events(conn: &Connection, mut filter: pb::ListAuditEventsRequest) -> Result<Vec<pb::AuditEvent>> {
    let mut admin = conn.admin().await?;
    let mut events = Vec::new();
    loop {
        let page = admin
            .list_audit_events(filter.clone())
            .await
            .map_err(status_error)?
            .into_inner();
        events.extend(page.events);
        if page.next_after_seq == 0 {
            return Ok(events);
        }
        filter.after_seq = page.next_after_seq;
    }
}

/// An audit event as one line: JSON, or text for people.
pub fn show_audit_event(e: &pb::AuditEvent, json: bool) -> String {
    if json {
        return serde_json::json!({
            "seq": e.seq,
            "at_unix_ms": e.at_unix_ms,
            "actor": e.actor,
            "role": e.role,
            "action": e.action,
            "call_id": e.call_id,
            "peer": e.peer,
            "detail": e.detail,
        })
        .to_string();
    }
    let who = if e.actor.is_empty() {
        String::from("(no valid token)")
    } else {
        format!("{} ({})", e.actor, e.role)
    };
    let mut line = format!("{}  {who}  {}", utc(e.at_unix_ms), e.action);
    if !e.call_id.is_empty() {
        line.push_str(&format!("  call {}", e.call_id));
    }
    if !e.peer.is_empty() {
        line.push_str(&format!("  from {}", e.peer));
    }
    if !e.detail.is_empty() {
        line.push_str(&format!("  {}", e.detail));
    }
    line
}

/// Unix milliseconds as `2026-12-01 05:54:37.123Z`.
fn utc(unix_ms: i64) -> String {
    let (days, ms) = (unix_ms.div_euclid(86_400_000), unix_ms.rem_euclid(86_400_000));
    // Howard Hinnant's days-to-civil: the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let s = ms / 1000;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000Z");
        // `date -u -d @1796104477.123`
        assert_eq!(utc(1_796_104_477_123), "2026-12-01 05:54:37.123Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00.000Z");
    }

    #[test]
    fn an_event_is_one_line_naming_no_token() {
        let e = pb::AuditEvent {
            seq: 3,
            at_unix_ms: 0,
            actor: "Sam".into(),
            role: "supervisor:billing".into(),
            action: "get_call".into(),
            call_id: "c1".into(),
            peer: "127.0.0.1:5000".into(),
            detail: String::new(),
        };
        assert_eq!(
            show_audit_event(&e, false),
            "1970-01-01 00:00:00.000Z  Sam (supervisor:billing)  get_call  call c1  from 127.0.0.1:5000"
        );
        let json: serde_json::Value = serde_json::from_str(&show_audit_event(&e, true)).unwrap();
        assert_eq!(
            (json["seq"].as_i64(), json["action"].as_str()),
            (Some(3), Some("get_call"))
        );
        let refused = pb::AuditEvent {
            action: "refused_token".into(),
            detail: "unknown token".into(),
            ..Default::default()
        };
        assert_eq!(
            show_audit_event(&refused, false),
            "1970-01-01 00:00:00.000Z  (no valid token)  refused_token  unknown token"
        );
    }
}
