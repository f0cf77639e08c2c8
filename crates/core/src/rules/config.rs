//! The rule file: TOML, loaded and checked once, so the engine never fails
//! at run time. TOML rather than YAML: comments, no significant indentation
//! for supervisors editing by hand, and the parser reports exact positions,
//! so every error names file, line and field.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use super::matcher::Phrase;
use crate::alerts::{Audience, Party, Severity};

/// A parsed, validated rulebook.
#[derive(Debug, Clone)]
pub struct Rulebook {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: Arc<str>,
    pub section: String,
    pub item: String,
    pub severity: Severity,
    pub audience: Vec<Audience>,
    pub message: String,
    pub script: Option<String>,
    /// The protocol passage the rule comes from.
    pub source: Option<String>,
    /// Counts toward the agent's score (false for what the caller does).
    pub scored: bool,
    pub kind: Kind,
}

/// Whose words a phrase rule listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    Agent,
    Customer,
}

impl Speaker {
    pub fn party(self) -> Party {
        match self {
            Self::Agent => Party::Agent,
            Self::Customer => Party::Customer,
        }
    }
}

/// Call-control events, from the softphone or a recording's sidecar file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlKind {
    Hold,
    Unhold,
    Mute,
    Unmute,
    Transfer,
    End,
    /// The softphone's stream went away without `end` (set by the server).
    Dropped,
}

impl ControlKind {
    /// The name in event files and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Unhold => "unhold",
            Self::Mute => "mute",
            Self::Unmute => "unmute",
            Self::Transfer => "transfer",
            Self::End => "end",
            Self::Dropped => "dropped",
        }
    }
}

/// One side of a sequence: a call-control event or a phrase said.
#[derive(Debug, Clone)]
pub enum Trigger {
    Event(ControlKind),
    Said(Speaker, Vec<Phrase>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// Within `within_s` of the call's start.
    Start(f64),
    /// Any time before the call ends.
    Call,
    /// In the call's closing: its last `within_s`, and never its first half
    /// (so a short call's greeting is not its closing).
    End(f64),
}

/// Phrases of which one must be said. A group may also accept the caller's
/// name (written `"{caller_name}"` in the rulebook): any word of a name the
/// caller gave.
#[derive(Debug, Clone)]
pub struct Group {
    pub phrases: Vec<Phrase>,
    pub caller_name: bool,
}

/// How a rulebook group asks for the caller's name.
pub const CALLER_NAME: &str = "{caller_name}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Call,
    Hold,
}

#[derive(Debug, Clone)]
pub enum Kind {
    RequiredPhrase {
        party: Speaker,
        groups: Vec<Group>,
        window: Window,
        when: Vec<Phrase>,
        /// The rule no longer applies once this call event happened (a
        /// transferred call is closed by whoever takes it).
        unless: Option<ControlKind>,
    },
    ForbiddenPhrase {
        party: Speaker,
        phrases: Vec<Phrase>,
        on_partials: bool,
    },
    /// `then` must come within `within_s` after `first` (After), or `first`
    /// within `within_s` before `then` (Before).
    Sequence {
        before: bool,
        first: Trigger,
        then: Trigger,
        within_s: f64,
    },
    Periodic {
        every_s: f64,
        party: Speaker,
        phrases: Vec<Phrase>,
    },
    TalkOver {
        interrupter: Speaker,
        min_overlap_s: f64,
        backchannel_s: f64,
    },
    DeadAir {
        min_s: f64,
    },
    MuteInsteadOfHold {
        min_s: f64,
    },
    Duration {
        state: State,
        max_s: f64,
    },
    /// Raised whenever a call-control event happens (a dropped call).
    OnEvent {
        event: ControlKind,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: u32,
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    kind: String,
    section: String,
    item: String,
    severity: Severity,
    audience: Vec<Audience>,
    message: String,
    script: Option<String>,
    source: Option<String>,
    scored: Option<bool>,
    party: Option<Speaker>,
    groups: Option<Vec<Vec<String>>>,
    window: Option<String>,
    within_s: Option<f64>,
    when: Option<Vec<String>>,
    unless: Option<ControlKind>,
    phrases: Option<Vec<String>>,
    on_partials: Option<bool>,
    mode: Option<String>,
    first: Option<RawTrigger>,
    then: Option<RawTrigger>,
    state: Option<String>,
    every_s: Option<f64>,
    interrupter: Option<Speaker>,
    min_overlap_ms: Option<u64>,
    backchannel_ms: Option<u64>,
    min_s: Option<f64>,
    max_s: Option<f64>,
    event: Option<ControlKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    event: Option<ControlKind>,
    party: Option<Speaker>,
    phrases: Option<Vec<String>>,
}

pub const KINDS: &str = "required_phrase, forbidden_phrase, sequence, periodic, talk_over, silence, duration, event";

impl Rulebook {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: cannot read rule file: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string()).map_err(anyhow::Error::msg)
    }

    /// Parses and validates; the error names `file:line` and the field.
    pub fn parse(text: &str, file: &str) -> Result<Self, String> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_of(s.start));
            format!("{file}:{line}: {}", e.message())
        })?;
        if raw.version != 1 {
            return Err(format!(
                "{file}:1: version {} is not supported (expected 1)",
                raw.version
            ));
        }
        let mut rules = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for spanned in raw.rule {
            let line = line_of(spanned.span().start);
            let raw = spanned.into_inner();
            let at = |msg: String| format!("{file}:{line}: rule {:?}: {msg}", raw.id);
            if !seen.insert(raw.id.clone()) {
                return Err(at("duplicate rule id".into()));
            }
            let kind = build_kind(&raw).map_err(at)?;
            if raw.audience.is_empty() {
                return Err(at("field `audience` must name agent and/or supervisor".into()));
            }
            rules.push(Rule {
                id: raw.id.as_str().into(),
                section: raw.section,
                item: raw.item,
                severity: raw.severity,
                audience: raw.audience,
                message: raw.message,
                script: raw.script,
                source: raw.source,
                scored: raw.scored.unwrap_or(true),
                kind,
            });
        }
        Ok(Self { rules })
    }
}

fn need<T: Clone>(value: &Option<T>, field: &str, kind: &str) -> Result<T, String> {
    value
        .clone()
        .ok_or_else(|| format!("kind {kind} needs field `{field}`"))
}

/// Phrases someone is expected to say: tolerant of one recognition slip.
fn phrases(list: &[String], field: &str) -> Result<Vec<Phrase>, String> {
    compile(list, field, true)
}

fn group(list: &[String]) -> Result<Group, String> {
    let caller_name = list.iter().any(|p| p == CALLER_NAME);
    let rest: Vec<String> = list.iter().filter(|p| *p != CALLER_NAME).cloned().collect();
    Ok(Group {
        phrases: if rest.is_empty() && caller_name {
            Vec::new()
        } else {
            phrases(&rest, "groups")?
        },
        caller_name,
    })
}

/// Phrases that raise alarms or conditions: exact words only.
fn exact_phrases(list: &[String], field: &str) -> Result<Vec<Phrase>, String> {
    compile(list, field, false)
}

fn compile(list: &[String], field: &str, lenient: bool) -> Result<Vec<Phrase>, String> {
    if list.is_empty() {
        return Err(format!("field `{field}` is empty"));
    }
    list.iter()
        .map(|p| Phrase::new(p, lenient).ok_or_else(|| format!("field `{field}`: phrase {p:?} has no words to match")))
        .collect()
}

fn positive(v: f64, field: &str) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("field `{field}` must be a positive number of seconds, not {v}"))
    }
}

fn trigger(t: &Option<RawTrigger>, field: &str) -> Result<Trigger, String> {
    let t = t
        .as_ref()
        .ok_or_else(|| format!("kind sequence needs field `{field}`"))?;
    match (&t.event, &t.party, &t.phrases) {
        (Some(e), None, None) => Ok(Trigger::Event(*e)),
        (None, Some(p), Some(list)) => Ok(Trigger::Said(*p, phrases(list, &format!("{field}.phrases"))?)),
        _ => Err(format!(
            "field `{field}` must be {{ event = \"hold\" }} or {{ party = \"agent\", phrases = [...] }}"
        )),
    }
}

fn build_kind(r: &RawRule) -> Result<Kind, String> {
    let k = r.kind.as_str();
    Ok(match k {
        "required_phrase" => {
            let groups = need(&r.groups, "groups", k)?;
            if groups.is_empty() {
                return Err("field `groups` is empty".into());
            }
            let window = match r.window.as_deref() {
                Some("start") => Window::Start(positive(need(&r.within_s, "within_s", k)?, "within_s")?),
                Some("call") => Window::Call,
                Some("end") => Window::End(positive(need(&r.within_s, "within_s", k)?, "within_s")?),
                Some(other) => {
                    return Err(format!(
                        "field `window`: {other:?} is not \"start\", \"call\" or \"end\""
                    ))
                }
                None => return Err(format!("kind {k} needs field `window`")),
            };
            Kind::RequiredPhrase {
                party: need(&r.party, "party", k)?,
                groups: groups.iter().map(|g| group(g)).collect::<Result<_, _>>()?,
                window,
                when: r.when.as_deref().map_or(Ok(Vec::new()), |w| exact_phrases(w, "when"))?,
                unless: r.unless,
            }
        }
        "forbidden_phrase" => Kind::ForbiddenPhrase {
            party: need(&r.party, "party", k)?,
            phrases: exact_phrases(&need(&r.phrases, "phrases", k)?, "phrases")?,
            on_partials: r.on_partials.unwrap_or(false),
        },
        "sequence" => Kind::Sequence {
            before: match need(&r.mode, "mode", k)?.as_str() {
                "before" => true,
                "after" => false,
                other => return Err(format!("field `mode`: {other:?} is not \"before\" or \"after\"")),
            },
            first: trigger(&r.first, "first")?,
            then: trigger(&r.then, "then")?,
            within_s: positive(need(&r.within_s, "within_s", k)?, "within_s")?,
        },
        "periodic" => {
            if need(&r.state, "state", k)? != "hold" {
                return Err("field `state`: periodic rules support \"hold\"".into());
            }
            Kind::Periodic {
                every_s: positive(need(&r.every_s, "every_s", k)?, "every_s")?,
                party: need(&r.party, "party", k)?,
                phrases: phrases(&need(&r.phrases, "phrases", k)?, "phrases")?,
            }
        }
        "talk_over" => Kind::TalkOver {
            interrupter: need(&r.interrupter, "interrupter", k)?,
            min_overlap_s: need(&r.min_overlap_ms, "min_overlap_ms", k)? as f64 / 1000.0,
            backchannel_s: r.backchannel_ms.unwrap_or(600) as f64 / 1000.0,
        },
        "silence" => {
            let min_s = positive(need(&r.min_s, "min_s", k)?, "min_s")?;
            match need(&r.mode, "mode", k)?.as_str() {
                "dead_air" => Kind::DeadAir { min_s },
                "mute_instead_of_hold" => Kind::MuteInsteadOfHold { min_s },
                other => {
                    return Err(format!(
                        "field `mode`: {other:?} is not \"dead_air\" or \"mute_instead_of_hold\""
                    ))
                }
            }
        }
        "duration" => Kind::Duration {
            state: match need(&r.state, "state", k)?.as_str() {
                "call" => State::Call,
                "hold" => State::Hold,
                other => return Err(format!("field `state`: {other:?} is not \"call\" or \"hold\"")),
            },
            max_s: positive(need(&r.max_s, "max_s", k)?, "max_s")?,
        },
        "event" => Kind::OnEvent {
            event: need(&r.event, "event", k)?,
        },
        other => return Err(format!("unknown kind {other:?} (expected one of: {KINDS})")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "version = 1\n\n[[rule]]\nid = \"x\"\nsection = \"Opening\"\nitem = \"i\"\nseverity = \"warning\"\naudience = [\"agent\"]\nmessage = \"m\"\n";

    fn err(body: &str) -> String {
        Rulebook::parse(&format!("{HEAD}{body}"), "rules.toml").unwrap_err()
    }

    #[test]
    fn unknown_kind_names_file_and_line() {
        let e = err("kind = \"vibes\"\n");
        assert!(e.starts_with("rules.toml:3: rule \"x\": unknown kind \"vibes\""), "{e}");
    }

    #[test]
    fn missing_field_is_named() {
        let e = err("kind = \"forbidden_phrase\"\nparty = \"agent\"\n");
        assert!(
            e.starts_with("rules.toml:3:") && e.contains("needs field `phrases`"),
            "{e}"
        );
    }

    #[test]
    fn bad_phrase_is_named() {
        let e = err("kind = \"forbidden_phrase\"\nparty = \"agent\"\nphrases = [\"ok\", \"?!\"]\n");
        assert!(
            e.contains("rules.toml:3:") && e.contains("phrase \"?!\" has no words"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_points_at_the_line() {
        let e = err("kind = \"silence\"\nmode = \"dead_air\"\nmin_s = \"ten\"\n");
        assert!(e.starts_with("rules.toml:12:"), "{e}");
        let e = err("kind = \"silence\"\nmode = \"dead_air\"\nmin_s = 10\nsevere = true\n");
        assert!(e.starts_with("rules.toml:") && e.contains("severe"), "{e}");
    }

    #[test]
    fn valid_rule_loads() {
        let book = Rulebook::parse(
            &format!("{HEAD}kind = \"silence\"\nmode = \"dead_air\"\nmin_s = 10\n"),
            "r",
        )
        .unwrap();
        assert!(matches!(book.rules[0].kind, Kind::DeadAir { min_s } if min_s == 10.0));
    }
}
