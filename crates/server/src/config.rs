//! `callwatch serve`'s configuration: a TOML file, then `CALLWATCH_*`
//! environment variables (`CALLWATCH_LISTEN`, `CALLWATCH_LIMITS__MAX_CALLS`:
//! a double underscore steps into a table), then command-line flags. All of
//! it is checked before the server starts, each problem named.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::auth::{Identity, Role, Tokens};
use callwatch_core::redact::{Entities, Entity};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// gRPC address.
    pub listen: SocketAddr,
    /// Store and state.
    pub data: PathBuf,
    /// Prometheus metrics over HTTP (`/metrics`); off when absent.
    pub metrics_listen: Option<SocketAddr>,
    /// ggml Whisper model [default: found on the model search path, see
    /// `callwatch_asr::model::locate`].
    pub model: Option<PathBuf>,
    /// Transcriber threads; 0: one per CPU core.
    pub workers: usize,
    /// CPU threads per decode.
    pub threads: usize,
    /// The rulebook file [default: the one built into the binary].
    pub rules: Option<PathBuf>,
    /// Seconds in-flight calls get to finish on SIGINT/SIGTERM.
    pub shutdown_grace_s: f64,
    pub limits: Limits,
    pub tls: Option<TlsFiles>,
    pub auth: Auth,
    pub privacy: Privacy,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// Entity types replaced by markers in everything that leaves a call
    /// (card, cvv, expiry, ssn, dob, account, routing, pin, phone, email)
    /// [default: all of them].
    #[serde(default = "all_entities")]
    pub redact: Vec<String>,
}

fn all_entities() -> Vec<String> {
    Entity::CONFIGURABLE.iter().map(|e| e.name().to_owned()).collect()
}

impl Default for Privacy {
    fn default() -> Self {
        Self { redact: all_entities() }
    }
}

impl Privacy {
    pub fn entities(&self) -> Result<Entities> {
        Entities::parse(&self.redact).context("bad configuration: privacy.redact")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Calls streaming at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_calls: usize,
    /// Largest audio packet, bytes.
    pub max_chunk_bytes: usize,
    /// Events queued for one dashboard stream (in the feed, and again on
    /// the stream) before it is switched to catching up from the store.
    pub subscriber_queue: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub token: String,
    /// `agent:<id>`, `supervisor:<team>`, `supervisor:*` or `admin`.
    pub role: String,
    /// Shown as who acknowledged an alert [default: the role].
    pub name: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".parse().expect("valid address"),
            data: PathBuf::from("callwatch-data"),
            metrics_listen: None,
            model: None,
            workers: 0,
            threads: 1,
            rules: None,
            shutdown_grace_s: 10.0,
            limits: Limits {
                max_calls: 64,
                max_chunk_bytes: 64 * 1024,
                subscriber_queue: 256,
            },
            tls: None,
            auth: Auth::default(),
            privacy: Privacy::default(),
        }
    }
}

/// Flags that override the file and the environment.
#[derive(Debug, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
}

/// Top-level keys, the environment variables `CALLWATCH_<KEY>` read.
const SETTINGS: [&str; 12] = [
    "listen",
    "data",
    "metrics_listen",
    "model",
    "workers",
    "threads",
    "rules",
    "shutdown_grace_s",
    "limits",
    "tls",
    "auth",
    "privacy",
];

/// Whether an environment key (prefix removed, maybe already split into a
/// path like "limits.max_calls") names a setting.
fn is_setting(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let top = key.split('.').next().unwrap_or_default();
    SETTINGS.contains(&top.split("__").next().unwrap_or_default())
}

impl ServeConfig {
    /// Defaults, then `file`, then the environment, then `flags`; checked.
    pub fn load(file: Option<&Path>, flags: Overrides) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(file) = file {
            if !file.exists() {
                bail!("{}: no such config file", file.display());
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only the settings' names: CALLWATCH_LOG (the log filter) and any
        // other CALLWATCH_ variable of the environment are not settings.
        figment = figment.merge(
            Env::prefixed("CALLWATCH_")
                .split("__")
                .filter(|key| is_setting(key.as_str())),
        );
        let mut cfg: Self = figment.extract().map_err(|e| {
            let errors: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            anyhow::anyhow!("bad configuration: {}", errors.join("; "))
        })?;
        cfg.listen = flags.listen.unwrap_or(cfg.listen);
        cfg.data = flags.data.unwrap_or(cfg.data);
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        if self.auth.tokens.is_empty() {
            bail!("bad configuration: no [[auth.tokens]]: every request would be refused; add tables with `token` and `role`");
        }
        self.tokens()?;
        self.privacy.entities()?;
        if !(self.shutdown_grace_s.is_finite() && self.shutdown_grace_s >= 0.0) {
            bail!("bad configuration: shutdown_grace_s must be seconds ≥ 0");
        }
        if self.limits.max_calls == 0 || self.limits.max_chunk_bytes < 64 || self.limits.subscriber_queue == 0 {
            bail!(
                "bad configuration: limits.max_calls and limits.subscriber_queue must be ≥ 1, limits.max_chunk_bytes ≥ 64"
            );
        }
        if let Some(tls) = &self.tls {
            for (what, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if !path.is_file() {
                    bail!("bad configuration: {what}: {} is not a file", path.display());
                }
            }
        }
        Ok(())
    }

    pub fn tokens(&self) -> Result<Tokens> {
        let mut seen = std::collections::HashSet::new();
        let mut entries = Vec::new();
        for (n, t) in self.auth.tokens.iter().enumerate() {
            let at = || format!("bad configuration: auth.tokens[{n}]");
            let role: Role = t
                .role
                .parse()
                .map_err(|e: String| anyhow::anyhow!(e))
                .with_context(at)?;
            if t.token.len() < 8 {
                bail!("{}: a token must be at least 8 characters", at());
            }
            if !seen.insert(&t.token) {
                bail!("{}: the same token is listed twice", at());
            }
            let name = t.name.clone().unwrap_or_else(|| role.to_string());
            entries.push((t.token.clone(), Identity { name, role }));
        }
        Ok(Tokens::new(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ServeConfig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callwatch.toml");
        std::fs::write(&path, text).unwrap();
        ServeConfig::load(Some(&path), Overrides::default())
    }

    const TOKENS: &str = "[[auth.tokens]]\ntoken = \"s3cret-admin\"\nrole = \"admin\"\n";

    #[test]
    fn file_then_flags() {
        let cfg = load(&format!("listen = \"127.0.0.1:7000\"\n[limits]\nmax_calls = 3\nmax_chunk_bytes = 4096\nsubscriber_queue = 8\n{TOKENS}")).unwrap();
        assert_eq!(cfg.listen.port(), 7000);
        assert_eq!(cfg.limits.max_calls, 3);
        assert_eq!(cfg.rules, None, "the built-in rulebook");
        let cfg = load(&format!("rules = \"/etc/callwatch/rules.toml\"\n{TOKENS}")).unwrap();
        assert_eq!(cfg.rules, Some(PathBuf::from("/etc/callwatch/rules.toml")));
    }

    #[test]
    fn privacy_redacts_everything_unless_told_and_refuses_unknown_types() {
        let cfg = load(TOKENS).unwrap();
        assert_eq!(cfg.privacy.entities().unwrap(), Entities::default());
        let cfg = load(&format!("[privacy]\nredact = [\"card\", \"ssn\"]\n{TOKENS}")).unwrap();
        assert_eq!(
            cfg.privacy.entities().unwrap(),
            Entities::parse(&["ssn", "card"]).unwrap()
        );
        let err = format!(
            "{:#}",
            load(&format!("[privacy]\nredact = [\"card\", \"names\"]\n{TOKENS}")).unwrap_err()
        );
        assert!(err.contains("privacy.redact") && err.contains("\"names\""), "{err}");
    }

    #[test]
    fn the_shipped_configs_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let example = ServeConfig::load(Some(&dir.join("callwatch.example.toml")), Overrides::default()).unwrap();
        assert_eq!(example.rules, None, "the example uses the built-in rulebook");
        assert_eq!(example.model, None, "the example finds the model on the search path");
        let demo = ServeConfig::load(Some(&dir.join("demo.toml")), Overrides::default()).unwrap();
        assert_eq!(demo.auth.tokens.len(), 3);
    }

    #[test]
    fn only_settings_are_read_from_the_environment() {
        assert!(is_setting("LIMITS.MAX_CALLS") && is_setting("limits__max_calls") && is_setting("shutdown_grace_s"));
        assert!(!is_setting("log") && !is_setting("token") && !is_setting("artifacts"));
    }

    #[test]
    fn problems_are_named() {
        let err = |text: &str| format!("{:#}", load(text).unwrap_err());
        assert!(err("").contains("no [[auth.tokens]]"));
        assert!(err(&format!("listen = \"nowhere\"\n{TOKENS}")).contains("listen"));
        assert!(err(&format!("colour = 1\n{TOKENS}")).contains("colour"));
        assert!(err("[[auth.tokens]]\ntoken = \"long-enough\"\nrole = \"boss\"\n").contains("auth.tokens[0]"));
        assert!(err("[[auth.tokens]]\ntoken = \"x\"\nrole = \"admin\"\n").contains("at least 8"));
        assert!(err(&format!("[tls]\ncert = \"/nope.pem\"\nkey = \"/nope.key\"\n{TOKENS}")).contains("tls.cert"));
    }
}
