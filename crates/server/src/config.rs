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

pub use crate::agents::AgentEntry;
use crate::auth::{self, Identity, Role, Tokens};
use callwatch_core::redact::{Entities, Entity};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// gRPC address. Anything but loopback needs `[tls]` or
    /// `allow_plaintext`.
    pub listen: SocketAddr,
    /// Serve without TLS on a non-loopback address (and metrics there):
    /// only on purpose, and warned about at start.
    #[serde(default)]
    pub allow_plaintext: bool,
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
    /// Server reflection without a token (it lists every service, Admin
    /// included); by default it needs one, like the services.
    #[serde(default)]
    pub reflection_open: bool,
    pub limits: Limits,
    pub tls: Option<TlsFiles>,
    pub auth: Auth,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub privacy: Privacy,
    /// Each agent's team, decided here and not by the softphone (see
    /// [`crate::agents`]); empty: softphones name their own team.
    #[serde(default)]
    pub agents: Vec<AgentEntry>,
    /// Telephony platforms streaming calls in over their own protocols.
    #[serde(default)]
    pub gateways: Gateways,
    /// Cluster mode: shared state for many nodes; today's single node
    /// when absent.
    #[serde(default)]
    pub cluster: Option<Cluster>,
}

/// `[cluster]`: this node's name and the engines the nodes of one contact
/// centre share; each engine is optional (absent: this node's own).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The shared call store, `postgres://user[:password]@host:port/db`
    /// (the password, when the URL has none, from `PGPASSWORD`); SQLite in
    /// `data` when absent.
    pub postgres: Option<String>,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// NATS servers (`nats://host:port`) with JetStream: the feed is then a
    /// JetStream stream every node follows.
    #[serde(default)]
    pub nats: Vec<String>,
}

impl Cluster {
    fn check(&self) -> Result<()> {
        if self.node.is_empty()
            || !self
                .node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!(
                "bad configuration: cluster.node must be a name of letters, digits, '-' or '_' (got {:?})",
                self.node
            );
        }
        for url in &self.nats {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| anyhow::anyhow!("bad configuration: cluster.nats: {url:?}: {e}"))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gateways {
    /// Twilio Media Streams at `/ingest/twilio`; off when absent.
    pub twilio: Option<crate::ingest::twilio::TwilioConfig>,
}

/// `[privacy]`: what leaves a call, what the server keeps, and for how long.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// Entity types replaced by markers in everything that leaves a call
    /// (card, cvv, expiry, ssn, dob, account, routing, pin, phone, email)
    /// [default: all of them].
    #[serde(default = "all_entities")]
    pub redact: Vec<String>,
    /// Calls (with their transcripts, alerts, claims and scorecards) and
    /// audit rows older than this many days are purged; kept forever when
    /// absent.
    pub retention_days: Option<u32>,
}

fn all_entities() -> Vec<String> {
    Entity::CONFIGURABLE.iter().map(|e| e.name().to_owned()).collect()
}

impl Default for Privacy {
    fn default() -> Self {
        Self {
            redact: all_entities(),
            retention_days: None,
        }
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
    /// A call whose stream brings no audio for this long is dropped.
    pub idle_timeout_s: f64,
    /// A stream that sends no `CallStart` within this long is refused.
    pub start_timeout_s: f64,
    /// A call longer than this is dropped.
    pub max_call_s: f64,
    /// HTTP/2 keepalive: a ping after this long without traffic, and the
    /// connection closed when its answer takes as long again.
    pub keepalive_s: f64,
    /// Calls one agent may stream at once.
    pub calls_per_agent: usize,
    /// Calls one token may stream at once (an admin token or a relay
    /// streaming for many agents included).
    pub calls_per_token: usize,
    /// Streams at once on one HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// Largest silence a jump in an audio packet sequence may stand for;
    /// a longer jump ends the call with INVALID_ARGUMENT.
    pub max_gap_ms: u64,
    /// How far a stream's audio may run ahead of real time before the
    /// stream stops being read (tokens with `fast = true` excepted).
    pub pace_burst_s: f64,
    /// How long a call whose connection broke waits for its softphone to
    /// reconnect and resume it (`CallStart.resume`) before it is DROPPED;
    /// 0: never resumed. A stream closed without END, or silent past
    /// `idle_timeout_s`, is dropped at once.
    pub resume_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificate(s): when set, every client must present a
    /// certificate signed by one of them (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
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
    /// The token itself; empty when `token_sha256` is given instead.
    #[serde(default)]
    pub token: String,
    /// The token's SHA-256, 64 hex digits: the config then holds no secret.
    #[serde(default)]
    pub token_sha256: Option<String>,
    /// `agent:<id>`, `supervisor:<team>`, `supervisor:*` or `admin`.
    pub role: String,
    /// Shown as who acknowledged an alert [default: the role].
    pub name: Option<String>,
    /// May stream audio faster than real time (a `--fast` replay, a
    /// test); others are held to real time past `limits.pace_burst_s`.
    #[serde(default)]
    pub fast: bool,
}

/// `[store]`: encryption at rest (SQLCipher). Unencrypted when neither
/// key source is given.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// A file holding the store's passphrase (trailing newline ignored).
    pub key_file: Option<PathBuf>,
    /// The name of an environment variable holding the passphrase.
    pub key_env: Option<String>,
}

impl StoreConfig {
    /// The passphrase, read now from where the config names (never kept in
    /// the config itself), or `None` for an unencrypted store.
    pub fn key(&self) -> Result<Option<String>> {
        let key = match (&self.key_file, &self.key_env) {
            (Some(_), Some(_)) => bail!("bad configuration: store.key_file and store.key_env: give one, not both"),
            (None, None) => return Ok(None),
            (Some(file), None) => std::fs::read_to_string(file)
                .with_context(|| format!("bad configuration: store.key_file: cannot read {}", file.display()))?,
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                anyhow::anyhow!("bad configuration: store.key_env: the environment variable {var} is not set")
            })?,
        };
        let key = key.trim_end_matches(['\n', '\r']).to_owned();
        if key.is_empty() {
            bail!("bad configuration: the store key is empty");
        }
        Ok(Some(key))
    }
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".parse().expect("valid address"),
            allow_plaintext: false,
            data: PathBuf::from("callwatch-data"),
            metrics_listen: None,
            model: None,
            workers: 0,
            threads: 1,
            rules: None,
            shutdown_grace_s: 10.0,
            reflection_open: false,
            limits: Limits {
                max_calls: 64,
                max_chunk_bytes: 64 * 1024,
                subscriber_queue: 256,
                idle_timeout_s: 10.0,
                start_timeout_s: 10.0,
                max_call_s: 4.0 * 3600.0,
                keepalive_s: 10.0,
                calls_per_agent: 1,
                calls_per_token: 64,
                max_concurrent_streams: 32,
                max_gap_ms: 10_000,
                pace_burst_s: 2.0,
                resume_s: 30.0,
            },
            tls: None,
            auth: Auth::default(),
            store: StoreConfig::default(),
            privacy: Privacy::default(),
            agents: Vec::new(),
            gateways: Gateways::default(),
            cluster: None,
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
const SETTINGS: [&str; 18] = [
    "listen",
    "allow_plaintext",
    "data",
    "metrics_listen",
    "model",
    "workers",
    "threads",
    "rules",
    "shutdown_grace_s",
    "reflection_open",
    "limits",
    "tls",
    "auth",
    "store",
    "privacy",
    "agents",
    "gateways",
    "cluster",
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
        self.store.key()?;
        if self.privacy.retention_days == Some(0) {
            bail!("bad configuration: privacy.retention_days must be ≥ 1 (leave it out to keep calls forever)");
        }
        self.privacy.entities()?;
        crate::agents::check(&self.agents)?;
        if let Some(twilio) = &self.gateways.twilio {
            twilio.check()?;
        }
        if let Some(cluster) = &self.cluster {
            cluster.check()?;
        }
        if !(self.shutdown_grace_s.is_finite() && self.shutdown_grace_s >= 0.0) {
            bail!("bad configuration: shutdown_grace_s must be seconds ≥ 0");
        }
        if self.limits.max_calls == 0 || self.limits.max_chunk_bytes < 64 || self.limits.subscriber_queue == 0 {
            bail!(
                "bad configuration: limits.max_calls and limits.subscriber_queue must be ≥ 1, limits.max_chunk_bytes ≥ 64"
            );
        }
        let l = &self.limits;
        for (what, s) in [
            ("limits.idle_timeout_s", l.idle_timeout_s),
            ("limits.start_timeout_s", l.start_timeout_s),
            ("limits.max_call_s", l.max_call_s),
            ("limits.keepalive_s", l.keepalive_s),
            ("limits.pace_burst_s", l.pace_burst_s),
        ] {
            // Below 1 ms, tokio's timers would read it as no time at all.
            if !(s.is_finite() && (0.001..=1e7).contains(&s)) {
                bail!("bad configuration: {what} must be seconds between 0.001 and 10000000, not {s}");
            }
        }
        if !(l.resume_s.is_finite() && (0.0..=1e7).contains(&l.resume_s)) {
            bail!(
                "bad configuration: limits.resume_s must be seconds between 0 and 10000000, not {}",
                l.resume_s
            );
        }
        if l.calls_per_agent == 0 || l.calls_per_token == 0 || l.max_concurrent_streams == 0 || l.max_gap_ms == 0 {
            bail!("bad configuration: limits.calls_per_agent, limits.calls_per_token, limits.max_concurrent_streams and limits.max_gap_ms must be ≥ 1");
        }
        if let Some(tls) = &self.tls {
            let ca = tls.client_ca.as_ref().map(|ca| ("tls.client_ca", ca));
            for (what, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)].into_iter().chain(ca) {
                if !path.is_file() {
                    bail!("bad configuration: {what}: {} is not a file", path.display());
                }
            }
        }
        self.check_exposure()
    }

    /// Plaintext only on loopback, unless `allow_plaintext`: the gRPC
    /// port without `[tls]`, and the metrics listener (always plaintext).
    pub fn check_exposure(&self) -> Result<()> {
        if self.allow_plaintext {
            return Ok(());
        }
        if self.tls.is_none() && !self.listen.ip().is_loopback() {
            bail!(
                "refusing to serve plaintext on {}: add [tls] cert and key, listen on 127.0.0.1, or set allow_plaintext = true",
                self.listen
            );
        }
        if let Some(metrics) = self.metrics_listen.filter(|m| !m.ip().is_loopback()) {
            bail!(
                "refusing to serve metrics (plaintext HTTP) on {metrics}: use a loopback metrics_listen such as 127.0.0.1:9464, or set allow_plaintext = true"
            );
        }
        Ok(())
    }

    /// What goes over the network in the clear, for the start-up warning.
    pub fn plaintext_exposed(&self) -> Vec<SocketAddr> {
        let grpc = (self.tls.is_none()).then_some(self.listen);
        [grpc, self.metrics_listen]
            .into_iter()
            .flatten()
            .filter(|a| !a.ip().is_loopback())
            .collect()
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
            let digest = match (t.token.is_empty(), &t.token_sha256) {
                (false, Some(_)) | (true, None) => bail!("{}: give exactly one of `token` and `token_sha256`", at()),
                (true, Some(hex)) => {
                    auth::parse_sha256(hex).map_err(|e| anyhow::anyhow!("{}: token_sha256: {e}", at()))?
                }
                (false, None) if t.token.len() < 8 => bail!("{}: a token must be at least 8 characters", at()),
                (false, None) => auth::sha256(&t.token),
            };
            if !seen.insert(digest) {
                bail!("{}: the same token is listed twice", at());
            }
            let name = t.name.clone().unwrap_or_else(|| role.to_string());
            entries.push((
                digest,
                Identity {
                    name,
                    role,
                    fast: t.fast,
                    token: digest,
                },
            ));
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
        let hashed = example.tokens().unwrap().find("change-me-supervisor-all");
        assert_eq!(hashed.map(|i| i.name), Some("Pat".into()), "the example's hashed token");
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
        assert!(err(&format!("[limits]\nidle_timeout_s = 0\n{TOKENS}")).contains("limits.idle_timeout_s"));
        assert!(err(&format!("[limits]\ncalls_per_agent = 0\n{TOKENS}")).contains("limits.calls_per_agent"));
        assert!(err(&format!("[tls]\ncert = \"/nope.pem\"\nkey = \"/nope.key\"\n{TOKENS}")).contains("tls.cert"));
        assert!(err(&format!("[privacy]\nretention_days = 0\n{TOKENS}")).contains("retention_days"));
        assert!(err(&format!("[[agents]]\nid = \"a1\"\nteam = \"\"\n{TOKENS}")).contains("agents[0].team"));
    }

    #[test]
    fn a_token_is_given_plain_or_as_its_sha256_never_both() {
        // sha256("s3cret-supervisor")
        let hashed = "[[auth.tokens]]\ntoken_sha256 = \"06238a90435e0d60bbc8abf65a5cd38121b210bf425e7df4e9f71371a4fb15a5\"\nrole = \"supervisor:*\"\n";
        let cfg = load(&format!("{TOKENS}{hashed}")).unwrap();
        let tokens = cfg.tokens().unwrap();
        assert_eq!(tokens.find("s3cret-admin").unwrap().role, Role::Admin);
        assert_eq!(tokens.find("s3cret-supervisor").unwrap().role, Role::Supervisor(None));
        let err = |text: &str| format!("{:#}", load(text).unwrap_err());
        let both = "[[auth.tokens]]\ntoken = \"s3cret-admin\"\ntoken_sha256 = \"00\"\nrole = \"admin\"\n";
        assert!(err(both).contains("auth.tokens[0]: give exactly one of `token` and `token_sha256`"));
        assert!(err("[[auth.tokens]]\nrole = \"admin\"\n").contains("exactly one"));
        let short = "[[auth.tokens]]\ntoken_sha256 = \"abc\"\nrole = \"admin\"\n";
        assert!(err(short).contains("auth.tokens[0]: token_sha256: expected 64 hex digits"));
        let twice = format!(
            "{TOKENS}[[auth.tokens]]\ntoken_sha256 = \"{}\"\nrole = \"admin\"\n",
            hex(&crate::auth::sha256("s3cret-admin"))
        );
        assert!(err(&twice).contains("listed twice"));
    }

    fn hex(digest: &[u8]) -> String {
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn the_store_key_comes_from_one_named_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.key");
        std::fs::write(&file, "correct horse battery staple\n").unwrap();
        let cfg = load(&format!("[store]\nkey_file = {:?}\n{TOKENS}", file)).unwrap();
        assert_eq!(
            cfg.store.key().unwrap().as_deref(),
            Some("correct horse battery staple")
        );
        assert_eq!(
            load(TOKENS).unwrap().store.key().unwrap(),
            None,
            "unencrypted by default"
        );
        let err = |text: &str| format!("{:#}", load(text).unwrap_err());
        assert!(
            err(&format!("[store]\nkey_env = \"CALLWATCH_TEST_NO_SUCH_KEY\"\n{TOKENS}"))
                .contains("store.key_env: the environment variable CALLWATCH_TEST_NO_SUCH_KEY is not set")
        );
        assert!(err(&format!("[store]\nkey_file = \"/nope.key\"\n{TOKENS}"))
            .contains("store.key_file: cannot read /nope.key"));
        let both = format!("[store]\nkey_file = {:?}\nkey_env = \"HOME\"\n{TOKENS}", file);
        assert!(err(&both).contains("give one, not both"));
        std::fs::write(&file, "\n").unwrap();
        assert!(err(&format!("[store]\nkey_file = {:?}\n{TOKENS}", file)).contains("the store key is empty"));
    }

    #[test]
    fn plaintext_only_on_loopback_unless_allowed() {
        let err = format!(
            "{:#}",
            load(&format!("listen = \"0.0.0.0:50051\"\n{TOKENS}")).unwrap_err()
        );
        assert!(
            err.contains("refusing to serve plaintext on 0.0.0.0:50051") && err.contains("allow_plaintext"),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
        let err = format!(
            "{:#}",
            load(&format!("metrics_listen = \"0.0.0.0:9464\"\n{TOKENS}")).unwrap_err()
        );
        assert!(err.contains("metrics") && err.contains("0.0.0.0:9464"), "{err}");
        let open = load(&format!(
            "listen = \"0.0.0.0:50051\"\nmetrics_listen = \"[::]:9464\"\nallow_plaintext = true\n{TOKENS}"
        ))
        .unwrap();
        assert_eq!(open.plaintext_exposed().len(), 2);
        assert!(load(&format!("listen = \"[::1]:50051\"\n{TOKENS}"))
            .unwrap()
            .plaintext_exposed()
            .is_empty());
    }
}
