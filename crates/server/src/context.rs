//! What every RPC handler shares. Handlers import this module, and the
//! server (which builds it) imports the handlers: never the other way round.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context as _, Result};
use tokio::sync::watch;

use crate::agent::Desks;
use crate::calls::Calls;
use crate::config::ServeConfig;
use crate::hub::Feed;
use crate::session::Sessions;
use crate::store::Store;
use callwatch_asr::transcribe::pool::Pool;
use callwatch_core::rules::config::Rulebook;
use callwatch_core::time::now_unix_ms;

/// A rulebook as loaded, with where it came from.
pub struct LoadedRules {
    pub book: Arc<Rulebook>,
    pub path: PathBuf,
    pub text: String,
    pub loaded_unix_ms: i64,
}

impl LoadedRules {
    pub fn load(path: &Path) -> Result<Self> {
        // Read once: the text kept is the text parsed.
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{}: cannot read rule file", path.display()))?;
        let book = Rulebook::parse(&text, &path.display().to_string()).map_err(anyhow::Error::msg)?;
        Ok(Self {
            book: Arc::new(book),
            path: path.to_owned(),
            text,
            loaded_unix_ms: now_unix_ms(),
        })
    }
}

/// What every RPC handler shares.
pub struct Shared {
    pub config: ServeConfig,
    pub pool: Arc<Pool>,
    pub store: Arc<Store>,
    pub feed: Arc<Feed>,
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
