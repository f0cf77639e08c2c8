//! What every RPC handler shares. Handlers import this module, and the
//! server (which builds it) imports the handlers: never the other way round.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context as _, Result};
use tokio::sync::watch;

use crate::agents::Roster;
use crate::audit::Audit;
use crate::calls::Calls;
use crate::config::ServeConfig;
use crate::desks::Desks;
use crate::feed::Feed;
use crate::slots::Sessions;
use crate::store::watched::Watched;
use crate::store::CallStore;
use callwatch_asr::transcribe::pool::Pool;
use callwatch_core::rules::builtin;
use callwatch_core::rules::config::Rulebook;
use callwatch_core::time::now_unix_ms;

/// A rulebook as loaded, with where it came from.
pub struct LoadedRules {
    pub book: Arc<Rulebook>,
    /// The file read; `None` for the built-in book.
    pub path: Option<PathBuf>,
    pub text: String,
    pub loaded_unix_ms: i64,
}

impl LoadedRules {
    /// Reads and checks `path`, or takes the built-in book for `None`.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let (text, name) = match path {
            // Read once: the text kept is the text parsed.
            Some(path) => (
                std::fs::read_to_string(path).with_context(|| format!("{}: cannot read rule file", path.display()))?,
                path.display().to_string(),
            ),
            None => (builtin::TEXT.to_owned(), builtin::NAME.to_owned()),
        };
        let book = Rulebook::parse(&text, &name).map_err(anyhow::Error::msg)?;
        Ok(Self {
            book: Arc::new(book),
            path: path.map(Path::to_owned),
            text,
            loaded_unix_ms: now_unix_ms(),
        })
    }

    /// Where the rules came from, as `GetRules` reports it.
    pub fn source(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| builtin::NAME.to_owned(), |p| p.display().to_string())
    }
}

/// What every RPC handler shares.
pub struct Shared {
    pub config: ServeConfig,
    /// Each agent's team (from `config.agents`).
    pub agents: Roster,
    pub pool: Arc<Pool>,
    /// The store (through `store_health`).
    pub store: Arc<dyn CallStore>,
    pub audit: Audit,
    /// Whether the store can be written (see [`Watched`]).
    pub store_health: Arc<Watched>,
    pub feed: Arc<dyn Feed>,
    pub calls: Calls,
    /// Live-call slots and session threads.
    pub sessions: Sessions,
    pub desks: Desks,
    pub rules: RwLock<Arc<LoadedRules>>,
    /// Becomes true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// New streams are refused once shutdown has begun.
    pub fn accepting(&self) -> Result<(), tonic::Status> {
        if *self.shutdown.borrow() {
            return Err(tonic::Status::unavailable("the server is shutting down"));
        }
        Ok(())
    }

    /// The rules new calls get.
    pub fn rules(&self) -> Arc<LoadedRules> {
        self.rules.read().expect("poisoned").clone()
    }
}
