//! Call-control events for a recording, from a sidecar file: one JSON object
//! a line, `{"t_s":12.5,"event":"hold"}`, with `"to":"Name"` for transfers.
//! A recording carries no softphone signalling; this file stands in for it
//! (and drives `callwatch softphone` later).

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::config::ControlKind;
use super::Control;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    t_s: f64,
    event: ControlKind,
    to: Option<String>,
}

/// The events of recording `wav` from `wav`'s `.events.jsonl` beside it,
/// or none when there is no such file.
pub fn beside(wav: &Path) -> Result<Vec<Control>> {
    let path = wav.with_extension("events.jsonl");
    if path.exists() {
        load(&path)
    } else {
        Ok(Vec::new())
    }
}

/// Reads and checks the file; events come back sorted by time.
pub fn load(path: &Path) -> Result<Vec<Control>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read events file", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), n + 1);
        let l: Line = serde_json::from_str(line).with_context(|| format!("{}: not a call-control event", at()))?;
        if !l.t_s.is_finite() || l.t_s < 0.0 {
            bail!("{}: t_s must be a time in seconds, not {}", at(), l.t_s);
        }
        if l.event == ControlKind::Transfer && l.to.is_none() {
            bail!("{}: a transfer needs \"to\": the recipient's name", at());
        }
        out.push(Control {
            t_s: l.t_s,
            kind: l.event,
            to: l.to,
        });
    }
    out.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_events_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("call.events.jsonl");
        std::fs::write(
            &path,
            "{\"t_s\":20,\"event\":\"unhold\"}\n\n{\"t_s\":14.5,\"event\":\"hold\"}\n",
        )
        .unwrap();
        let events = load(&path).unwrap();
        assert_eq!(
            events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [ControlKind::Hold, ControlKind::Unhold]
        );

        std::fs::write(&path, "{\"t_s\":1,\"event\":\"hold\"}\n{\"t_s\":2,\"event\":\"nap\"}\n").unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        assert!(err.contains("call.events.jsonl:2") && err.contains("nap"), "{err}");

        std::fs::write(&path, "{\"t_s\":3,\"event\":\"transfer\"}\n").unwrap();
        assert!(format!("{:#}", load(&path).unwrap_err()).contains("recipient"));
    }
}
