//! Which team a call belongs to: the server decides, from the config's
//! `[[agents]]` (`id`, `team`), never the softphone.
//!
//! With `[[agents]]` configured:
//! - an agent not listed may not stream (PERMISSION_DENIED);
//! - `CallStart.team` empty takes the agent's configured team; the same
//!   team is accepted; any other is PERMISSION_DENIED naming the field
//!   (never the configured team: a denial tells nobody another team's name).
//!
//! Without `[[agents]]` (a small or trial deployment) the softphone's team is
//! taken as it comes, bounded to [`MAX_TEAM`] bytes, and the server warns at
//! start that teams are the clients' say-so.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tonic::Status;

/// One `[[agents]]` table of the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    pub id: String,
    pub team: String,
}

/// Longest team name, bytes: a team is a label in every feed event, row and
/// dashboard filter.
pub const MAX_TEAM: usize = 64;

/// Agent id → team, from the config.
#[derive(Debug, Clone, Default)]
pub struct Roster(Option<HashMap<String, String>>);

/// Checks `[[agents]]`: ids unique, ids and teams 1 to [`MAX_TEAM`] bytes.
pub fn check(agents: &[AgentEntry]) -> Result<()> {
    let mut seen = HashSet::new();
    for (n, a) in agents.iter().enumerate() {
        for (what, value) in [("id", &a.id), ("team", &a.team)] {
            if value.is_empty() || value.len() > MAX_TEAM {
                bail!("bad configuration: agents[{n}].{what} must be 1 to {MAX_TEAM} bytes");
            }
        }
        if !seen.insert(&a.id) {
            bail!("bad configuration: agents[{n}]: agent {:?} is listed twice", a.id);
        }
    }
    Ok(())
}

impl Roster {
    pub fn new(agents: &[AgentEntry]) -> Self {
        if agents.is_empty() {
            return Self(None);
        }
        Self(Some(agents.iter().map(|a| (a.id.clone(), a.team.clone())).collect()))
    }

    /// Whether teams come from the config (false: from the softphones).
    pub fn configured(&self) -> bool {
        self.0.is_some()
    }

    /// The team of a call that agent `agent_id` starts, claiming `claimed`
    /// (may be empty).
    pub fn team_of(&self, agent_id: &str, claimed: &str) -> Result<String, Status> {
        let Some(teams) = &self.0 else {
            if claimed.len() > MAX_TEAM {
                return Err(Status::invalid_argument(format!(
                    "CallStart.team is {} bytes, over the limit of {MAX_TEAM}",
                    claimed.len()
                )));
            }
            return Ok(claimed.to_owned());
        };
        let Some(team) = teams.get(agent_id) else {
            return Err(Status::permission_denied(format!(
                "CallStart.agent_id: agent {:?} is not in the server's [[agents]]",
                clip(agent_id)
            )));
        };
        if claimed.is_empty() || claimed == team {
            Ok(team.clone())
        } else {
            Err(Status::permission_denied(format!(
                "CallStart.team: agent {agent_id:?} belongs to another team in the server's [[agents]]; send its own team or none"
            )))
        }
    }
}

/// An unknown client-sent value, shortened for an error message.
fn clip(s: &str) -> &str {
    let end = (0..=MAX_TEAM.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn roster() -> Roster {
        let agent = |id: &str, team: &str| AgentEntry {
            id: id.into(),
            team: team.into(),
        };
        Roster::new(&[agent("a17", "billing"), agent("b22", "sales")])
    }

    #[test]
    fn the_configured_team_wins_and_a_mismatch_is_denied_without_naming_it() {
        let r = roster();
        assert_eq!(r.team_of("a17", "").unwrap(), "billing");
        assert_eq!(r.team_of("a17", "billing").unwrap(), "billing");
        let denied = r.team_of("a17", "sales").unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(denied.message().starts_with("CallStart.team"), "{}", denied.message());
        assert!(!denied.message().contains("billing"), "{}", denied.message());
        let unknown = r.team_of(&"z".repeat(1000), "").unwrap_err();
        assert_eq!(unknown.code(), Code::PermissionDenied);
        assert!(unknown.message().len() < 200, "{}", unknown.message());
    }

    #[test]
    fn without_agents_the_softphones_team_is_taken_within_bounds() {
        let r = Roster::new(&[]);
        assert!(!r.configured());
        assert_eq!(r.team_of("x", "sales").unwrap(), "sales");
        assert_eq!(
            r.team_of("x", &"t".repeat(1 << 20)).unwrap_err().code(),
            Code::InvalidArgument
        );
    }

    #[test]
    fn bad_rosters_are_named() {
        let agent = |id: &str, team: &str| AgentEntry {
            id: id.into(),
            team: team.into(),
        };
        let err = check(&[agent("a1", "x"), agent("a1", "y")]).unwrap_err().to_string();
        assert!(err.contains("agents[1]") && err.contains("twice"), "{err}");
        let err = check(&[agent("a1", "")]).unwrap_err().to_string();
        assert!(err.contains("agents[0].team"), "{err}");
    }
}
