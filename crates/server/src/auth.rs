//! Access control: bearer tokens from the config, each mapped to a role.
//!
//! - `agent:<id>` streams its own calls and receives its own nudges;
//! - `supervisor:<team>` watches and acknowledges that team's calls,
//!   `supervisor:*` every team's;
//! - `admin` reloads rules, and may do what the others may.
//!
//! The interceptor only authenticates (UNAUTHENTICATED for a missing or
//! unknown token) and attaches the [`Identity`]; each RPC then checks that
//! the identity may do what it asks (PERMISSION_DENIED).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::lockout::Lockout;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Agent(String),
    /// `None`: every team.
    Supervisor(Option<String>),
    Admin,
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "admin" => Ok(Self::Admin),
            Some(("agent", id)) if !id.is_empty() => Ok(Self::Agent(id.to_owned())),
            Some(("supervisor", "*")) => Ok(Self::Supervisor(None)),
            Some(("supervisor", team)) if !team.is_empty() => Ok(Self::Supervisor(Some(team.to_owned()))),
            _ => Err(format!(
                "unknown role {s:?}: expected \"agent:<id>\", \"supervisor:<team>\", \"supervisor:*\" or \"admin\""
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Agent(id) => write!(f, "agent:{id}"),
            Self::Supervisor(Some(team)) => write!(f, "supervisor:{team}"),
            Self::Supervisor(None) => write!(f, "supervisor:*"),
            Self::Admin => write!(f, "admin"),
        }
    }
}

/// Who is calling: attached to every authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's name from the config (shown as who claimed an alert).
    pub name: String,
    pub role: Role,
    /// May stream audio faster than real time (`fast = true` in the config).
    pub fast: bool,
    /// The token's SHA-256: what its calls are counted by
    /// (`limits.calls_per_token`).
    pub token: Digest,
}

impl Identity {
    /// May stream calls of agent `agent_id`.
    pub fn may_stream_as(&self, agent_id: &str) -> Result<(), Status> {
        match &self.role {
            Role::Admin => Ok(()),
            Role::Agent(id) if id == agent_id => Ok(()),
            _ => Err(Status::permission_denied(format!(
                "{} ({}) may not stream calls of agent {agent_id:?}",
                self.name, self.role
            ))),
        }
    }

    /// The team filter this identity is held to: `Some(None)` for every
    /// team, `Some(Some(team))` for one, `None` when it may not supervise.
    fn supervised(&self) -> Option<Option<&str>> {
        match &self.role {
            Role::Admin | Role::Supervisor(None) => Some(None),
            Role::Supervisor(Some(team)) => Some(Some(team)),
            Role::Agent(_) => None,
        }
    }

    /// The teams to show for a request naming `team` (empty: any allowed):
    /// `None` means every team.
    pub fn teams_for(&self, team: &str) -> Result<Option<String>, Status> {
        match (self.supervised(), team) {
            (None, _) => Err(self.denied("watch calls")),
            (Some(None), "") => Ok(None),
            (Some(None), t) => Ok(Some(t.to_owned())),
            (Some(Some(own)), "") => Ok(Some(own.to_owned())),
            (Some(Some(own)), t) if t == own => Ok(Some(own.to_owned())),
            (Some(Some(own)), t) => Err(Status::permission_denied(format!(
                "{} (supervisor of {own}) may not watch team {t:?}",
                self.name
            ))),
        }
    }

    /// May watch or act on a call of `team`.
    pub fn may_supervise(&self, team: &str) -> Result<(), Status> {
        match self.supervised() {
            Some(None) => Ok(()),
            Some(Some(own)) if own == team => Ok(()),
            _ => Err(self.denied(&format!("watch calls of team {team:?}"))),
        }
    }

    pub fn may_administer(&self) -> Result<(), Status> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(self.denied("change the server's rules")),
        }
    }

    pub fn may_read_audit(&self) -> Result<(), Status> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(self.denied("read the audit log")),
        }
    }

    fn denied(&self, what: &str) -> Status {
        Status::permission_denied(format!("{} ({}) may not {what}", self.name, self.role))
    }
}

/// The identity attached by [`Tokens::authenticate`].
pub fn identity<T>(req: &Request<T>) -> Result<Identity, Status> {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no credentials"))
}

/// A token's SHA-256: what [`Tokens`] keeps and compares.
pub type Digest = [u8; 32];

pub fn sha256(token: &str) -> Digest {
    Sha256::digest(token.as_bytes()).into()
}

/// A `token_sha256` from the config: 64 hex digits.
pub fn parse_sha256(hex: &str) -> Result<Digest, String> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "expected 64 hex digits (`sha256sum` of the token), got {:?}",
            hex
        ));
    }
    let mut digest = [0; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).expect("ASCII"), 16).expect("hex digits");
    }
    Ok(digest)
}

/// Token digests → identities, from the config, and the failed attempts
/// per peer (see [`crate::lockout`]). Tokens are kept and compared only as
/// SHA-256 digests, every entry each time and in constant time: how long a
/// refusal takes says nothing about how close a guess was.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Arc<Vec<(Digest, Identity)>>,
    lockout: Arc<Lockout>,
}

impl Tokens {
    pub fn new(tokens: impl IntoIterator<Item = (Digest, Identity)>) -> Self {
        Self {
            tokens: Arc::new(tokens.into_iter().collect()),
            lockout: Arc::default(),
        }
    }

    /// The identity of `token`, if the config lists it.
    pub fn find(&self, token: &str) -> Option<Identity> {
        let presented = sha256(token);
        let mut found = None;
        for (digest, identity) in self.tokens.iter() {
            if bool::from(digest.ct_eq(&presented)) {
                found = Some(identity);
            }
        }
        found.cloned()
    }

    /// The interceptor: `authorization: Bearer <token>`. A peer that sent
    /// too many unknown tokens is refused until its window ends.
    #[allow(clippy::result_large_err)] // tonic's interceptor signature
    pub fn authenticate(&self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let peer = req.remote_addr().map(|a| a.ip());
        if let Some(left) = peer.and_then(|p| self.lockout.locked(p, Instant::now())) {
            return Err(Status::resource_exhausted(format!(
                "too many unknown tokens from this address; try again in {left} s"
            )));
        }
        let header = req
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("missing \"authorization: Bearer <token>\" metadata"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("the authorization metadata must be \"Bearer <token>\""))?;
        let Some(identity) = self.find(token.trim()) else {
            // Logged without the token: a near miss is half a secret.
            match peer {
                Some(peer) => {
                    let failures = self.lockout.failed(peer, Instant::now());
                    tracing::warn!(%peer, failures, "a request with an unknown token");
                }
                None => tracing::warn!("a request with an unknown token"),
            }
            return Err(Status::unauthenticated("unknown token"));
        };
        req.extensions_mut().insert(identity);
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: &str) -> Identity {
        Identity {
            name: "t".into(),
            role: role.parse().unwrap(),
            fast: false,
            token: sha256("t"),
        }
    }

    #[test]
    fn roles_parse_and_bad_ones_are_named() {
        assert_eq!("agent:a7".parse(), Ok(Role::Agent("a7".into())));
        assert_eq!("supervisor:*".parse(), Ok(Role::Supervisor(None)));
        for bad in ["agent:", "boss", "supervisor:", "admin:x"] {
            assert!(bad.parse::<Role>().unwrap_err().contains(bad));
        }
    }

    #[test]
    fn each_role_reaches_only_its_scope() {
        let agent = who("agent:a7");
        assert!(agent.may_stream_as("a7").is_ok());
        assert!(agent.may_stream_as("a8").is_err());
        assert!(agent.teams_for("").is_err() && agent.may_administer().is_err() && agent.may_read_audit().is_err());

        let sup = who("supervisor:billing");
        assert_eq!(sup.teams_for("").unwrap(), Some("billing".into()));
        assert_eq!(
            sup.teams_for("sales").unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert!(sup.may_supervise("billing").is_ok() && sup.may_supervise("sales").is_err());
        assert!(sup.may_stream_as("a7").is_err() && sup.may_administer().is_err());
        assert_eq!(sup.may_read_audit().unwrap_err().code(), tonic::Code::PermissionDenied);

        let all = who("supervisor:*");
        assert_eq!(all.teams_for("").unwrap(), None);
        assert_eq!(all.teams_for("sales").unwrap(), Some("sales".into()));

        let admin = who("admin");
        assert!(admin.may_administer().is_ok() && admin.may_stream_as("a7").is_ok() && admin.may_read_audit().is_ok());
    }

    #[test]
    fn tokens_are_found_by_digest_plain_or_hashed() {
        let digest = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"; // sha256("secret")
        assert_eq!(parse_sha256(digest).unwrap(), sha256("secret"));
        assert_eq!(parse_sha256(&digest.to_uppercase()).unwrap(), sha256("secret"));
        let tokens = Tokens::new([
            (parse_sha256(digest).unwrap(), who("admin")),
            (sha256("other-token"), who("agent:a7")),
        ]);
        assert_eq!(tokens.find("secret").unwrap().role, Role::Admin);
        assert_eq!(tokens.find("other-token").unwrap().role, Role::Agent("a7".into()));
        assert!(tokens.find("secreT").is_none() && tokens.find("").is_none());
        assert!(tokens.find(digest).is_none(), "the digest is not the token");
    }

    #[test]
    fn bad_digests_are_named() {
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert!(parse_sha256(bad).unwrap_err().contains("64 hex digits"), "{bad}");
        }
    }
}
